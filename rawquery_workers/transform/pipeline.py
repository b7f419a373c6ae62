"""`transform_records`: a batch of API records -> one Arrow table per Iceberg table.

Order (INTERFACE.md): flatten -> expand -> include -> coerce types -> rename, with the
incremental cursor and the primary-key dedupe choosing the rows kept before the columns
are typed. User-facing rules: docs/transform.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from rawquery_workers.spec.models import Expand, Stream
from rawquery_workers.transform.arrow import TypedColumn, TypedTable, null_column, type_column
from rawquery_workers.transform.batch import KEY, KnownSchema, TableBatch, TransformResult
from rawquery_workers.transform.columnar import ArrowValues, Lazy, child_items, flatten_struct
from rawquery_workers.transform.cursor import at_or_after, greatest, latest_per_key
from rawquery_workers.transform.expand import (
    child_rows,
    key_text,
    parent_key_values,
    split_expanded,
)
from rawquery_workers.transform.fields import FieldRules
from rawquery_workers.transform.flatten import FlatColumn, FlattenRules, flatten_rows

ColumnValues = list[object] | ArrowValues
Records = list[dict] | Callable[[], list[dict]]


@dataclass(slots=True)
class _Selection:
    rows: list[int] | None  # indices of the records kept, None: all
    dropped_by_cursor: int = 0
    max_cursor: str | None = None
    warnings: list[str] = field(default_factory=list)
    typed: dict[str, TypedColumn] = field(default_factory=dict)  # over all records, by name

    def take(self, values: ColumnValues) -> ColumnValues:
        if self.rows is None:
            return values
        if isinstance(values, ArrowValues):
            return values.take(self.rows)
        return list(map(values.__getitem__, self.rows))


def transform_records(
    stream: Stream,
    records: Records,
    known: Mapping[str, KnownSchema] | None = None,
    since_cursor: str | None = None,
    parsed: pa.StructArray | None = None,
) -> TransformResult:
    """Shape `records` (already extracted at `data_path`) into the stream's table and its
    child tables. `known` maps table names to their current schema in the catalog;
    `since_cursor` is the saved cursor (records before it are dropped).

    `parsed`: the same records as Arrow read them from the page bodies
    (transform/columnar.py), which spares making columns of Python objects; `records` may
    then be a function giving them, called only if a column needs the parsed values."""
    known = known or {}
    flatten = FlattenRules(stream.flatten, expanded=frozenset(stream.expand))
    if parsed is not None:
        count = len(parsed)
        load = records if callable(records) else lambda: records
        columns, warnings = flatten_struct(parsed, Lazy(load), flatten)  # type: ignore[arg-type]
    else:
        rows = records() if callable(records) else records
        if not frozenset(map(type, rows)) <= {dict}:  # a bare value is a record {"value": v}
            rows = [r if type(r) is dict else {"value": r} for r in rows]
        count = len(rows)
        columns, warnings = flatten_rows(rows, flatten)
    columns, expanded = split_expanded(columns, stream.expand)
    rules = FieldRules.for_stream(stream)
    chosen = _select(stream, rules, columns, known.get(stream.name), since_cursor, count)
    warnings += chosen.warnings
    kept = count if chosen.rows is None else len(chosen.rows)
    parent, keys = _typed(
        None, rules, columns, chosen, stream.primary_key, known.get(stream.name), warnings, kept
    )
    key_arrays = [parent.array(k) for k in keys]
    tables = [_batch(stream.name, parent, keys, key_arrays, warnings)]
    for name, expand in stream.expand.items():
        values = chosen.take(expanded[name]) if expanded[name] is not None else None
        tables.append(_child(stream, name, expand, values, key_arrays, known, warnings))
    return TransformResult(
        tables=tables,
        records_in=count,
        records_dropped_by_cursor=chosen.dropped_by_cursor,
        max_cursor=chosen.max_cursor,
        warnings=warnings,
    )


def _select(
    stream: Stream,
    rules: FieldRules,
    columns: list[FlatColumn],
    known: KnownSchema | None,
    since: str | None,
    count: int,
) -> _Selection:
    """The records kept: at or after the saved cursor, then the newest of each key."""
    by_name = {c.name: c for c in columns}
    chosen = _Selection(rows=None)

    def typed(name: str) -> TypedColumn:
        final = rules.rename.get(name, name)
        values = by_name[name].values if name in by_name else [None] * count
        column = type_column(None, final, values, rules.declared(name), known)
        chosen.typed[name] = column
        return column

    cursor = None
    if stream.cursor_field and stream.cursor_field in by_name:
        cursor_column = typed(stream.cursor_field)
        cursor = cursor_column.array
        if since is not None:
            chosen.rows, warning = at_or_after(cursor, cursor_column.type, since)
            chosen.warnings += [warning] if warning else []
            chosen.dropped_by_cursor = 0 if chosen.rows is None else count - len(chosen.rows)
    if stream.primary_key:
        keys = [typed(k).array for k in stream.primary_key]
        chosen.rows = latest_per_key(keys, cursor, chosen.rows)
    if cursor is not None:
        if chosen.rows is not None:
            cursor = cursor.take(pa.array(chosen.rows, pa.int64()))
        chosen.max_cursor = greatest(cursor)
    return chosen


def _typed(
    table: str | None,
    rules: FieldRules,
    columns: list[FlatColumn],
    chosen: _Selection,
    key_names: list[str],
    known: KnownSchema | None,
    warnings: list[str],
    rows: int,
    first: TypedColumn | None = None,
) -> tuple[TypedTable, tuple[str, ...]]:
    """include -> coerce -> rename for the kept rows; returns the table and its key names."""
    kept = rules.select(columns, key_names)
    reserved = [first.name] if first else []
    final, renamed = rules.final_names([c.name for c in kept], reserved)
    warnings += _label(table, renamed)
    out = TypedTable(rows)
    if first is not None:
        out.columns.append(first)
    for column in kept:
        ready = chosen.typed.get(column.name) if chosen.rows is None else None
        if ready is not None and ready.name == final[column.name]:
            out.columns.append(ready)  # typed already to choose the rows, and all are kept
            continue
        values = chosen.take(column.values)
        declared = rules.declared(column.name)
        out.columns.append(type_column(table, final[column.name], values, declared, known))
    for name in key_names:
        if name not in final:
            final[name] = rules.rename.get(name, name)
            declared = rules.declared(name)
            out.columns.append(null_column(table, final[name], out.rows, declared, known))
    warnings += out.warnings
    return out, tuple(final[k] for k in key_names)


def _batch(
    name: str,
    typed: TypedTable,
    keys: tuple[str, ...],
    key_arrays: list[pa.Array],
    warnings: list[str],
    parent: tuple[str, str, pa.Array] | None = None,
) -> TableBatch:
    """The batch of one table; `parent` (child tables): (parent table, parent-key column,
    the parent keys of the batch)."""
    extra = {}
    if keys:
        extra[KEY] = key_text(key_arrays)
        if missing := extra[KEY].null_count:
            warnings.append(
                f"{name}: {missing} records have no value for primary key "
                f"{', '.join(keys)}; they are kept but cannot be deduplicated"
            )
    data = typed.to_table(extra)
    if parent is None:
        return TableBatch(name, data, keys, retypable=typed.retypable)
    table, column, owners = parent
    return TableBatch(name, data, keys, column, table, owners, typed.retypable)


def _child(
    stream: Stream,
    field_name: str,
    expand: Expand,
    values: ColumnValues | None,
    parent_keys: list[pa.Array],
    known: Mapping[str, KnownSchema],
    warnings: list[str],
) -> TableBatch:
    table = stream.child_table(field_name)
    flat_rules = FlattenRules(stream.flatten, scope=field_name)
    reserved = [expand.parent_key]
    arrow = child_items(values) if isinstance(values, ArrowValues) else None
    if arrow is not None:
        items, owner, parsed = arrow
        columns, clashes = flatten_struct(items, parsed, flat_rules, reserved)
    else:
        if isinstance(values, ArrowValues):
            values = values.python()
        rows = child_rows(values)
        owner = rows.owner
        columns, clashes = flatten_rows(rows.rows, flat_rules, reserved)
    warnings += _label(table, clashes)
    owners = parent_key_values(parent_keys)
    link = TypedColumn(expand.parent_key, owners.take(owner), "string", {})  # type unused
    rules = FieldRules.for_child(stream, field_name)
    selection = _Selection(None)
    child_known = known.get(table)
    typed, keys = _typed(
        table, rules, columns, selection, expand.keys, child_known, warnings, len(link.array), link
    )
    parent = (stream.name, expand.parent_key, pc.drop_null(owners))
    return _batch(table, typed, keys, [typed.array(k) for k in keys], warnings, parent)


def _label(table: str | None, lines: list[str]) -> list[str]:
    return lines if table is None else [f"{table}: {line}" for line in lines]
