"""What transform hands to the sink: one Arrow table per Iceberg table, with its keys."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

# Columns rawquery adds to every table (INTERFACE.md: system columns start with `_rq_`).
SYSTEM_PREFIX = "_rq_"
SYNCED_AT = "_rq_synced_at"  # timestamp[us, UTC]: when the sync that wrote the row started
REJECTED = "_rq_rejected"  # string, JSON object {column: original value} of uncoercible values
KEY = "_rq_key"  # string: the primary key of the row as one comparable value


@dataclass(frozen=True, slots=True)
class Layout:
    """How a table is laid out in Iceberg, by final column names: `partition_by` as
    (transform, column) pairs, the transform one of identity, day, month (a table another
    engine repartitioned may also hold year, hour); `sort_by` the sort order's columns
    (ascending). From the spec for a batch; from the table's metadata for a KnownSchema."""

    partition_by: tuple[tuple[str, str], ...] = ()
    sort_by: tuple[str, ...] = ()

    @property
    def columns(self) -> frozenset[str]:
        return frozenset(c for _, c in self.partition_by) | frozenset(self.sort_by)


@dataclass(frozen=True, slots=True)
class KnownSchema:
    """A table's current columns as Arrow types; `retypable` columns have only held nulls so
    far (stored as string) and may take the type of the first real values a sync brings.
    `layout`: the table's partition spec and sort order, which its files must follow."""

    schema: pa.Schema
    retypable: frozenset[str] = frozenset()
    layout: Layout = Layout()


@dataclass(frozen=True, slots=True)
class TableBatch:
    """Rows for one table: `name` is the table (STREAM or STREAM_FIELD), `data` has final
    column names (after rename), `keys` are the final names of its primary-key columns,
    `parent_key` (child tables only) the final name of the column pointing at the parent.

    `parent_keys` (child tables only): the parent key value of every parent row of the batch,
    including parents with no children now, so the sink can replace (delete) their old
    children; typed like the child's `parent_key` column, no nulls.
    `retypable`: columns of `data` that held only nulls in this batch and were given type
    string for that reason (see KnownSchema.retypable).

    System columns (last, in this order): `_rq_rejected` (always present; null on rows
    where every value was read) and `_rq_key` (only when `keys` is not empty: the key
    values as one string, the value itself as text for a one-column key, a JSON array of
    the values otherwise; never null, keys.py refuses a batch with a null key value).
    `layout`: the stream's `partition_by` and `sort_by` (its own table only), for the
    sink to set when it creates the table."""

    name: str
    data: pa.Table
    keys: tuple[str, ...] = ()
    parent_key: str | None = None
    parent: str | None = None
    parent_keys: pa.Array | None = None
    retypable: frozenset[str] = frozenset()
    layout: Layout = Layout()


@dataclass(frozen=True, slots=True)
class TransformResult:
    """The parent table first, then its children; `max_cursor` is the greatest cursor value
    among the kept records (as a string), `warnings` are user-facing lines with counts.
    `renames` are the lines of `warnings` saying that an API field lands under another
    column name than its own (`TABLE: API field "ID" lands as column "ID_2" (...)`): a sync
    reports them as schema changes rather than warnings."""

    tables: list[TableBatch]
    records_in: int = 0
    records_dropped_by_cursor: int = 0
    max_cursor: str | None = None
    warnings: list[str] = field(default_factory=list)
    renames: list[str] = field(default_factory=list)
