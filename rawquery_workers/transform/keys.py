"""A primary key is never null: the one place the rule is applied, to every keyed table.

A keyed table holds one row per key (`_rq_key`, "newest version wins"); a row whose key is
null could never be matched again, so each sync would add it once more. A key value is null
when the record has none (the field is missing or JSON null), or when the value cannot be
stored in the column's type (an id beyond 64 bits arriving in a long column): any other
column gets null and keeps the value in `_rq_rejected`, a key column cannot. Either way the
batch is refused with a TransformError naming the stream, the column and the fix; the
stream fails, and what earlier syncs committed stays as it was.

Choosing the rows (cursor.latest_per_key) runs before the columns are typed and keeps
such records; they are refused here, once the key columns are typed as they will land.
"""

from __future__ import annotations

from dataclasses import dataclass

from rawquery_workers.errors import TransformError
from rawquery_workers.transform.arrow import TypedColumn
from rawquery_workers.transform.batch import KnownSchema
from rawquery_workers.transform.infer import ICEBERG_NAMES
from rawquery_workers.transform.parse import json_text


@dataclass(frozen=True, slots=True)
class KeyColumn:
    """A primary-key column as landed; `name` is its name in the spec (after flatten,
    before rename), as `primary_key` and `types` spell it."""

    name: str
    column: TypedColumn


@dataclass(frozen=True, slots=True)
class KeyedTable:
    """Where the keys are: `field` is the expanded field of a child table (None: the
    stream's own table); `known` the table's schema in the catalog."""

    stream: str
    table: str
    field: str | None
    known: KnownSchema | None


def require_keys(where: KeyedTable, keys: list[KeyColumn]) -> None:
    """Raise TransformError when a key column has a null value in some row."""
    for key in keys:
        column = key.column
        if column.rejected:
            raise TransformError(_unstorable(where, key))
        if column.array.null_count:
            raise TransformError(_missing(where, key, column.array.null_count))


def _unstorable(where: KeyedTable, key: KeyColumn) -> str:
    column = key.column
    first = column.rejected[min(column.rejected)]
    stored = ICEBERG_NAMES[column.type]
    holds = f"holds {json_text(first)}, which does not fit its {stored} column"
    if others := len(column.rejected) - 1:
        holds += f" (nor do {others} more of its values)"
    declare = f'declare "types": {{{json_text(_types_key(where, key))}: "string"}} in the stream'
    if _in_table(where.known, column.name):
        fix = (
            f"{declare} and re-create the table, whose column keeps its type otherwise "
            "(rq connections delete CONNECTION --drop-tables, then rq connect and sync again)"
        )
    else:
        fix = declare
    return f"{_head(where)}: primary key {_label(key)} {holds}; {fix}"


def _missing(where: KeyedTable, key: KeyColumn, count: int) -> str:
    noun = ("record", "records") if where.field is None else ("item", "items")
    many = f"{count} {noun[0]} has" if count == 1 else f"{count} {noun[1]} have"
    setting = "primary_key" if where.field is None else f"expand.{where.field}.primary_key"
    return (
        f"{_head(where)}: {many} no value (missing or null) for primary key {_label(key)}, "
        f"which every row of a keyed table needs; check that {setting} names a field every "
        f"{noun[0]} has (names are the API's, after flatten)"
    )


def _head(where: KeyedTable) -> str:
    if where.table == where.stream:
        return f"stream {where.stream}"
    return f"stream {where.stream}, table {where.table}"


def _label(key: KeyColumn) -> str:
    if key.column.name == key.name:
        return f"column '{key.name}'"
    return f"'{key.name}' (column '{key.column.name}')"


def _types_key(where: KeyedTable, key: KeyColumn) -> str:
    return key.name if where.field is None else f"{where.field}.{key.name}"


def _in_table(known: KnownSchema | None, name: str) -> bool:
    """Whether the column's type is the table's: a column the table has with real values."""
    return known is not None and name in known.schema.names and name not in known.retypable
