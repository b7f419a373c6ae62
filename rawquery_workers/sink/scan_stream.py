"""A table's current rows as an Arrow stream that DuckDB may read any number of times.

DuckDB reads an object that has `__arrow_c_stream__` by calling it again for every scan
(and to learn its schema), while a `RecordBatchReader` can be read only once: a self-join
or a subquery on the same table would find it consumed. `RescannableScan` plans the
table's files once (so every scan of one query sees the same snapshot) and starts a new
reader per call. The reader goes one data file at a time: only that file's batches are in
memory, however large the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
from pyiceberg.io.pyarrow import ArrowScan, schema_to_pyarrow

from rawquery_workers.errors import NotFoundError

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from rawquery_workers.sink.iceberg import IcebergSink


class RescannableScan:
    """The rows of one snapshot of a table, readable again and again (Arrow PyCapsule)."""

    def __init__(self, table: Table) -> None:
        scan = table.scan()
        projection = scan.projection()
        self._tasks = list(scan.plan_files())
        self._arrow = ArrowScan(
            scan.table_metadata, scan.io, projection, scan.row_filter, scan.case_sensitive
        )
        self.schema: pa.Schema = schema_to_pyarrow(projection)

    def reader(self) -> pa.RecordBatchReader:
        """A new, independent stream of every row."""
        # The cast, as pyiceberg's own reader does: batches come in the table's Arrow types.
        return pa.RecordBatchReader.from_batches(self.schema, self._batches()).cast(self.schema)

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.reader().__arrow_c_stream__(requested_schema)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        for task in self._tasks:  # one file at a time: see the module docstring
            yield from self._arrow.to_record_batches([task])


def rescannable_scan(sink: IcebergSink, namespace: str, table: str) -> RescannableScan:
    """`RescannableScan` of the table's current snapshot; NotFoundError when it is absent."""
    loaded = sink.tables.load_or_none(namespace, table)
    if loaded is None:
        raise NotFoundError(f"table {namespace}.{table} does not exist")
    return RescannableScan(loaded)
