"""`transform_records`: a batch of API records -> one Arrow table per Iceberg table.

Order (INTERFACE.md): flatten -> expand -> include -> coerce types -> rename, with the
incremental cursor and the primary-key dedupe choosing the rows kept before the columns
are typed. User-facing rules: docs/transform.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from rawquery_workers.spec.models import Expand, Stream
from rawquery_workers.transform.arrow import TypedColumn, TypedTable, null_column, type_column
from rawquery_workers.transform.batch import KEY, KnownSchema, Layout, TableBatch, TransformResult
from rawquery_workers.transform.columnar import ArrowValues, Lazy, child_items, flatten_struct
from rawquery_workers.transform.cursor import at_or_after, greatest, latest_per_key
from rawquery_workers.transform.expand import (
    child_rows,
    key_text,
    parent_key_values,
    shared_keys,
    split_expanded,
)
from rawquery_workers.transform.fields import FieldRules
from rawquery_workers.transform.flatten import FlatColumn, FlattenRules, flatten_rows, rename_note
from rawquery_workers.transform.keys import KeyColumn, KeyedTable, require_keys

ColumnValues = list[object] | ArrowValues
Records = list[dict[str, Any]] | Callable[[], list[dict[str, Any]]]


@dataclass(slots=True)
class _Notes:
    """What a batch reports: `warnings` (every line), `renames` (the lines saying a column is
    not named as its API field: also in `warnings`)."""

    stream: str
    warnings: list[str] = field(default_factory=list)
    renames: list[str] = field(default_factory=list)

    def renamed(self, table: str | None, lines: list[str]) -> None:
        labelled = [f"{table or self.stream}: {line}" for line in lines]
        self.warnings += labelled
        self.renames += labelled


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
    notes = _Notes(stream.name)
    flatten = FlattenRules(stream.flatten, expanded=frozenset(stream.expand))
    if parsed is not None:
        count = len(parsed)
        load = records if callable(records) else lambda: records
        columns, renamed = flatten_struct(parsed, Lazy(load), flatten)  # type: ignore[arg-type]
    else:
        rows = records() if callable(records) else records
        if not frozenset(map(type, rows)) <= {dict}:  # a bare value is a record {"value": v}
            rows = [r if type(r) is dict else {"value": r} for r in rows]
        count = len(rows)
        columns, renamed = flatten_rows(rows, flatten)
    notes.renamed(None, renamed)
    columns, expanded = split_expanded(columns, stream.expand)
    rules = FieldRules.for_stream(stream)
    table_known = known.get(stream.name)
    chosen = _select(stream, rules, columns, table_known, since_cursor, count)
    notes.warnings += chosen.warnings
    kept = count if chosen.rows is None else len(chosen.rows)
    parent, keys = _typed(
        None, rules, columns, chosen, stream.primary_key, table_known, notes, kept
    )
    where = KeyedTable(stream.name, stream.name, None, table_known)
    layout = _layout(stream, rules)
    tables = [dataclasses.replace(_batch(where, parent, stream.primary_key, keys), layout=layout)]
    key_arrays = [parent.array(k) for k in keys]
    for name, expand in stream.expand.items():
        found = expanded[name]
        values = chosen.take(found) if found is not None else None
        tables.append(_child(stream, name, expand, values, key_arrays, known, notes))
    return TransformResult(
        tables=tables,
        records_in=count,
        records_dropped_by_cursor=chosen.dropped_by_cursor,
        max_cursor=chosen.max_cursor,
        warnings=notes.warnings,
        renames=notes.renames,
    )


def _layout(stream: Stream, rules: FieldRules) -> Layout:
    """The stream's `partition_by` and `sort_by`, by final column names (after rename)."""
    final = rules.rename.get
    return Layout(
        tuple((transform, final(c, c)) for transform, c in stream.partition_fields),
        tuple(final(c, c) for c in stream.sort_by),
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
        values: ColumnValues = by_name[name].values if name in by_name else [None] * count
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
    notes: _Notes,
    rows: int,
    first: TypedColumn | None = None,
) -> tuple[TypedTable, tuple[str, ...]]:
    """include -> coerce -> rename for the kept rows; returns the table and its key names."""
    kept = rules.select(columns, key_names)
    reserved = [first.name] if first else []
    existing = known.schema.names if known is not None else ()
    final, clashes = rules.final_names([c.name for c in kept], reserved, existing)
    notes.renamed(
        table,
        [
            rename_note(".".join(c.path), final[c.name], clashes[c.name])
            for c in kept
            if c.name in clashes
        ],
    )
    out = TypedTable(rows)
    if first is not None:
        out.columns.append(first)
        final.setdefault(first.name, first.name)  # a child's key may include its parent's
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
    notes.warnings += out.warnings
    return out, tuple(final[k] for k in key_names)


def _batch(
    where: KeyedTable,
    typed: TypedTable,
    key_names: list[str],
    keys: tuple[str, ...],
    parent: tuple[str, str, pa.Array] | None = None,
) -> TableBatch:
    """The batch of one table; `key_names` are the key columns as the spec names them,
    `keys` their final names; `parent` (child tables): (parent table, parent-key column,
    the parent keys of the batch)."""
    name = where.table
    extra = {}
    if keys:
        columns = [typed.column(k) for k in keys]
        require_keys(where, [KeyColumn(n, c) for n, c in zip(key_names, columns, strict=True)])
        extra[KEY] = key_text([c.array for c in columns])
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
    notes: _Notes,
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
    notes.renamed(table, clashes)
    owners = parent_key_values(parent_keys)
    # The type is unused; a link with no parent values yet (a sync that found no
    # records) must not fix the column's type before the parent's key has one.
    unknown = owners.null_count == len(owners)
    link = TypedColumn(expand.parent_key, owners.take(owner), "string", {}, retypable=unknown)
    rules = FieldRules.for_child(stream, field_name)
    selection = _Selection(None)
    child_known = known.get(table)
    typed, keys = _typed(
        table, rules, columns, selection, expand.keys, child_known, notes, len(link.array), link
    )
    parent = (stream.name, expand.parent_key, pc.drop_null(owners))
    where = KeyedTable(stream.name, table, field_name, child_known)
    batch = _batch(where, typed, expand.keys, keys, parent)
    if expand.parent_key not in expand.keys and (shared := shared_keys(batch.data, link.name)):
        fix = orjson.dumps([expand.parent_key, *expand.keys]).decode()
        notes.warnings.append(
            f"{table}: {shared} child keys ({', '.join(keys)}) appear under several parents; "
            "each keeps only its last parent's row. For items shared by many parents "
            f'(assignees, labels) key the child by its parent too: "primary_key": {fix}'
        )
    return batch
