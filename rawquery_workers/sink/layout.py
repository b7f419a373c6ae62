"""A table's Iceberg layout: identifier fields, partition spec, sort order (decisions/010).

Declared when rawquery creates a table, from the batch: the primary-key columns become
required columns and the schema's identifier fields; the stream's `partition_by` and
`sort_by` become the partition spec and sort order. A column that has no type yet (a first
sync that found no records: every column is retypable, schema.py) cannot be declared, so
while the table holds no rows the first `prepare` that gives those columns a type declares
them. A table that holds rows keeps its layout: Iceberg would not rewrite its files, and
old rows could not satisfy a required column they never had.

Each data file of a partitioned table holds one partition value: TableFiles writes a
chunk's rows through `split`, and `file_partition` computes a file's partition record from
its own rows (column statistics would not do: they truncate strings to 16 characters and
are not kept for every column), which is how rewritten files keep theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.partitioning import PartitionField, PartitionSpec, partition_record_value
from pyiceberg.schema import Schema
from pyiceberg.table import Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.sorting import NullOrder, SortDirection, SortField, SortOrder
from pyiceberg.table.update.schema import UpdateSchema
from pyiceberg.transforms import IdentityTransform, parse_transform
from pyiceberg.typedef import Record
from pyiceberg.types import NestedField

from rawquery_workers.errors import SinkError
from rawquery_workers.sink.schema import TIMESTAMP, arrow_schema, iceberg_type
from rawquery_workers.transform.batch import Layout, TableBatch

# Partition fields get their own names: a partition name must differ from every column
# name, now and after any later schema change, and no API field lands under `_rq_`.
_PARTITION_NAME = {"identity": "{}", "day": "_rq_{}_day", "month": "_rq_{}_month"}
_TIME_TYPES = (TIMESTAMP, pa.date32())
_FIRST_PARTITION_ID = 1000  # Iceberg's convention: partition field ids start here


def layout_of(metadata: TableMetadata) -> Layout:
    """The layout a table has (what its files must follow)."""
    schema = metadata.schema()
    parts = tuple(
        (str(f.transform), schema.find_column_name(f.source_id) or "")
        for f in metadata.spec().fields
    )
    order = metadata.sort_order_by_id(metadata.default_sort_order_id)
    sorts = tuple(
        name
        for f in (order.fields if order is not None else [])
        if isinstance(f.transform, IdentityTransform)
        and (name := schema.find_column_name(f.source_id)) is not None
    )
    return Layout(parts, sorts)


def holds_no_rows(metadata: TableMetadata) -> bool:
    """Whether no branch of the table has a row (a full refresh stages rows on a branch)."""
    for ref in metadata.refs.values():
        snapshot = metadata.snapshot_by_id(ref.snapshot_id)
        summary = snapshot.summary if snapshot is not None else None
        if summary is None or summary.get("total-records", "1") != "0":
            return False
    return True


# --- declaring --------------------------------------------------------------------------


def creation_schema(wanted: pa.Schema, keys: Sequence[str], null_only: frozenset[str]) -> Schema:
    """The Iceberg schema a new table gets: `wanted`'s columns, the key columns required and
    declared as identifier fields when every one of them has a type (ids are provisional:
    the catalog assigns fresh ones)."""
    declared = set(keys) if _typed(keys, wanted.names, null_only) else set()
    fields = [
        NestedField(n, f.name, iceberg_type(f.type), required=f.name in declared)
        for n, f in enumerate(wanted, start=1)
    ]
    ids = [f.field_id for f in fields if f.name in declared]
    return Schema(*fields, identifier_field_ids=ids)


def creation_layout(
    schema: Schema, wanted: pa.Schema, batch: TableBatch, null_only: frozenset[str], where: str
) -> tuple[PartitionSpec, SortOrder, list[str]]:
    """The partition spec and sort order of a new table of `schema` (empty ones when the
    layout's columns have no type yet), and one line per declaration."""
    layout = batch.layout
    if not layout.partition_by and not layout.sort_by:
        return PartitionSpec(), SortOrder(), []
    if not _layout_ready(layout, wanted, null_only, batch, where):
        return PartitionSpec(), SortOrder(), []
    spec = PartitionSpec(
        *(
            PartitionField(
                schema.find_field(column).field_id,
                _FIRST_PARTITION_ID + n,
                parse_transform(transform),
                _PARTITION_NAME[transform].format(column),
            )
            for n, (transform, column) in enumerate(layout.partition_by)
        )
    )
    order = SortOrder(
        *(
            SortField(
                source_id=schema.find_field(c).field_id,
                transform=IdentityTransform(),
                direction=SortDirection.ASC,
                null_order=NullOrder.NULLS_LAST,
            )
            for c in layout.sort_by
        )
    )
    return spec, order, _lines(layout)


def keys_to_declare(
    metadata: TableMetadata, batch: TableBatch, names: Sequence[str], retypable: frozenset[str]
) -> tuple[str, ...]:
    """The key columns an existing table should now make required and its identifier
    fields: those of a table with none yet, no rows, and every key column typed once the
    batch is applied (`names`, `retypable`: its columns and retypable set then)."""
    keys = batch.keys
    if not keys or metadata.schema().identifier_field_ids or not holds_no_rows(metadata):
        return ()
    return keys if _typed(keys, names, retypable) else ()


def declare_keys(update: UpdateSchema, keys: Sequence[str], added: frozenset[str]) -> None:
    """Make `keys` required and the identifier fields, in an update allowing incompatible
    changes (the table holds no rows); `added`: the columns this update adds, which
    `add_column` already made required. No keys: nothing changes (the table keeps the
    identifier fields it has)."""
    if not keys:
        return
    for key in keys:
        if key not in added:
            update.update_column((key,), required=True)
    update.set_identifier_fields(*keys)


def declare_layout_later(
    tx: Transaction, batch: TableBatch, retypable: frozenset[str], where: str
) -> list[str]:
    """Declare the batch's layout on an existing table that has none and holds no rows,
    once its columns have types (in `tx`, after its schema update; `retypable`: the
    table's retypable columns after it). Lines as at creation."""
    layout, metadata = batch.layout, tx.table_metadata
    if not layout.partition_by and not layout.sort_by:
        return []
    has = layout_of(metadata)
    if has.partition_by or has.sort_by or not holds_no_rows(metadata):
        return []
    if not _layout_ready(layout, arrow_schema(metadata.schema()), retypable, batch, where):
        return []
    if layout.partition_by:
        with tx.update_spec() as spec:
            for transform, column in layout.partition_by:
                name = _PARTITION_NAME[transform].format(column)
                spec.add_field(column, parse_transform(transform), name)
    if layout.sort_by:
        with tx.update_sort_order() as order:
            for column in layout.sort_by:
                order.asc(column, IdentityTransform(), NullOrder.NULLS_LAST)
    return _lines(layout)


def _typed(keys: Sequence[str], names: Sequence[str], retypable: frozenset[str]) -> bool:
    present = set(names)
    return bool(keys) and all(k in present and k not in retypable for k in keys)


def _layout_ready(
    layout: Layout, wanted: pa.Schema, null_only: frozenset[str], batch: TableBatch, where: str
) -> bool:
    """Whether every layout column is a column of `wanted` with a type (not in
    `null_only`); SinkError when the batch has rows and one is not (a wrong name, or a
    column the records never fill), or has the wrong type."""
    missing = sorted(c for c in layout.columns if c not in wanted.names or c in null_only)
    if missing:
        if batch.data.num_rows == 0:
            return False  # a first sync with no records: declared when rows come
        names = ", ".join(f"'{c}'" for c in missing)
        raise SinkError(
            f"{where}: partition_by/sort_by name {names}, which no record of this sync has a "
            "value for, so the table cannot be laid out by it; check the names (the API's, "
            'after flatten) or declare the column\'s type in "types"'
        )
    for transform, column in layout.partition_by:
        arrow_type = wanted.field(column).type
        if transform != "identity" and arrow_type not in _TIME_TYPES:
            raise SinkError(
                f"{where}: partition_by {transform}({column}) needs a timestamp or date column, "
                f"but '{column}' holds {iceberg_type(arrow_type)} values; declare "
                f'"types": {{"{column}": "timestamp"}} if they are timestamps, or partition '
                f'by "{column}" itself'
            )
        if transform == "identity" and arrow_type == TIMESTAMP:
            raise SinkError(
                f"{where}: partition_by '{column}' would make one partition per instant; "
                f'use "day({column})" or "month({column})"'
            )
    return True


def _lines(layout: Layout) -> list[str]:
    lines = []
    if layout.partition_by:
        named = (c if t == "identity" else f"{t}({c})" for t, c in layout.partition_by)
        lines.append(f"partitioned by {', '.join(named)}")
    if layout.sort_by:
        lines.append(f"sort order {', '.join(layout.sort_by)}")
    return lines


# --- writing ----------------------------------------------------------------------------


def split(rows: pa.Table, layout: Layout, where: str) -> list[tuple[tuple[Any, ...], pa.Table]]:
    """`rows` sorted by the layout's sort columns and cut into one table per partition
    value (key: the partition values, () when the table is not partitioned)."""
    present = set(rows.column_names)
    sorting = [(c, "ascending") for c in layout.sort_by if c in present]
    if sorting:
        rows = rows.sort_by(sorting)  # nulls last, as the sort order says
    if not layout.partition_by:
        return [((), rows)]
    names = [f"p{n}" for n in range(len(layout.partition_by))]
    keyed = pa.table(
        {
            **{
                name: partition_values(_column(rows, column), transform, f"{where}.{column}")
                for name, (transform, column) in zip(names, layout.partition_by, strict=True)
            },
            "row": pa.array(range(rows.num_rows), pa.int64()),
        }
    )
    groups = keyed.group_by(names, use_threads=False).aggregate([("row", "list")])
    keys = list(zip(*(groups.column(n).to_pylist() for n in names), strict=True))
    if len(keys) == 1:
        return [(keys[0], rows)]
    indices = groups.column("row_list").to_pylist()
    return [(key, rows.take(pa.array(i, pa.int64()))) for key, i in zip(keys, indices, strict=True)]


def partition_values(values: pa.ChunkedArray | pa.Array, transform: str, where: str) -> pa.Array:
    """Iceberg's partition transform of a column, per row (identity, year, month, day, hour)."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if transform == "identity" or pa.types.is_null(array.type):  # no value: the null partition
        return array
    if transform in ("year", "month") and array.type in _TIME_TYPES:
        years = pc.subtract(pc.year(array), 1970)
        if transform == "year":
            return pc.cast(years, pa.int32())
        months = pc.add(pc.multiply(years, 12), pc.subtract(pc.month(array), 1))
        return pc.cast(months, pa.int32())
    if transform == "day" and array.type in _TIME_TYPES:
        return pc.cast(pc.cast(array, pa.date32()), pa.int32())
    if transform == "hour" and array.type == TIMESTAMP:
        hours = pc.floor(pc.divide(pc.cast(pc.cast(array, pa.int64()), pa.float64()), 3.6e9))
        return pc.cast(hours, pa.int32())
    raise SinkError(
        f"{where}: the table is partitioned by {transform}() of a {array.type} column, which "
        "rawquery cannot write; partition it by identity, year, month, day or hour of a "
        "timestamp or date (or drop and re-create the table)"
    )


def file_partition(parquet: pq.ParquetFile, metadata: TableMetadata, path: str) -> Record:
    """The partition record of a data file of the table's current spec, from its rows."""
    spec, schema = metadata.spec(), metadata.schema()
    if spec.is_unpartitioned():
        return Record()
    names = {f.source_id: schema.find_column_name(f.source_id) or "" for f in spec.fields}
    stored = set(parquet.schema_arrow.names)
    columns = parquet.read(columns=sorted({n for n in names.values() if n in stored}))
    values = []
    for field in spec.fields:
        name = names[field.source_id]
        column = _column(columns, name, parquet.metadata.num_rows)
        distinct = pc.unique(partition_values(column, str(field.transform), f"{path}: {name}"))
        if len(distinct) > 1:
            raise SinkError(
                f"{path}: holds rows of {len(distinct)} partitions of '{field.name}'; each data "
                "file of a partitioned table must hold one (TableFiles splits them)"
            )
        value = distinct[0].as_py() if len(distinct) else None
        values.append(partition_record_value(field, value, schema))
    return Record(*values)


def _column(table: pa.Table, name: str, rows: int | None = None) -> pa.ChunkedArray | pa.Array:
    """A column, or nulls where the rows lack it (a sparse field: the null partition)."""
    if name in table.column_names:
        return table.column(name)
    return pa.nulls(table.num_rows if rows is None else rows)
