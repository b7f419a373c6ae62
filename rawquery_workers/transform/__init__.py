"""Records -> Arrow tables: flatten, expand, fields, types, schema inference.

`transform_records(stream, records, known=None, since_cursor=None)` is the entry point; the
tables it returns are described in `batch.py`, the user-facing rules in docs/transform.md.

May import: errors, spec. No I/O.
"""

from rawquery_workers.transform.batch import (
    KEY,
    REJECTED,
    SYNCED_AT,
    KnownSchema,
    TableBatch,
    TransformResult,
)
from rawquery_workers.transform.pipeline import transform_records

__all__ = [
    "KEY",
    "REJECTED",
    "SYNCED_AT",
    "KnownSchema",
    "TableBatch",
    "TransformResult",
    "transform_records",
]
