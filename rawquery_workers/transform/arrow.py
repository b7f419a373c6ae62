"""Typed Arrow columns and tables: choose each column's type, coerce, collect rejections."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from rawquery_workers.spec.models import ColumnType
from rawquery_workers.transform.batch import REJECTED, KnownSchema
from rawquery_workers.transform.coerce import coerce, read_values
from rawquery_workers.transform.columnar import ArrowValues
from rawquery_workers.transform.infer import Resolved, column_type_of, resolve_type
from rawquery_workers.transform.parse import json_text


@dataclass(frozen=True, slots=True)
class TypedColumn:
    name: str  # final name
    array: pa.Array
    type: ColumnType
    rejected: dict[int, object]
    retypable: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class TypedTable:
    """Columns being assembled into one table, system columns excluded."""

    rows: int
    columns: list[TypedColumn] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return [w for c in self.columns for w in c.warnings]

    @property
    def retypable(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns if c.retypable)

    def column(self, name: str) -> TypedColumn:
        return next(c for c in self.columns if c.name == name)

    def array(self, name: str) -> pa.Array:
        return self.column(name).array

    def to_table(self, extra: dict[str, pa.Array]) -> pa.Table:
        """The columns, then `_rq_rejected`, then `extra` (other system columns)."""
        arrays = {c.name: c.array for c in self.columns}
        arrays[REJECTED] = rejected_column(self.rows, self.columns)
        arrays.update(extra)
        schema = pa.schema([pa.field(n, a.type, nullable=True) for n, a in arrays.items()])
        return pa.Table.from_arrays(list(arrays.values()), schema=schema)


def type_column(
    table: str | None,
    name: str,
    values: list[object] | ArrowValues,
    declared: ColumnType | None,
    known: KnownSchema | None,
) -> TypedColumn:
    """`values` coerced to the column's type (table's, else declared, else inferred)."""
    label = f"'{name}'" if table is None else f"'{table}.{name}'"
    read = read_values(values)
    resolved = resolve_type(label, read.kinds, declared, _existing(known, name))
    got = coerce(read, resolved.type)
    warnings = [resolved.warning] if resolved.warning else []
    if resolved.inferred and resolved.type == "integer" and got.rejected:
        got = coerce(read, "string")
        resolved = Resolved("string", inferred=True)
        warnings.append(f"column {label}: integers beyond 64 bits; stored as string")
    if got.rejected:
        warnings.append(
            f"column {label}: {_count(len(got.rejected), 'value')} could not be read as "
            f"{resolved.type}; kept in {REJECTED}"
        )
    return TypedColumn(
        name, got.array, resolved.type, got.rejected, resolved.retypable, tuple(warnings)
    )


def null_column(
    table: str | None, name: str, rows: int, declared: ColumnType | None, known: KnownSchema | None
) -> TypedColumn:
    """A column no record of the batch has (a key column must still be there)."""
    return type_column(table, name, [None] * rows, declared, known)


def rejected_column(rows: int, columns: list[TypedColumn]) -> pa.Array:
    """`_rq_rejected`: per row, the JSON object {column: original value} of what was not read."""
    per_row: dict[int, dict[str, object]] = {}
    for column in columns:
        for row, original in column.rejected.items():
            per_row.setdefault(row, {})[column.name] = original
    if not per_row:
        return pa.nulls(rows, pa.string())
    texts: list[str | None] = [None] * rows
    for row, originals in per_row.items():
        texts[row] = json_text(originals)
    return pa.array(texts, pa.string())


def _existing(known: KnownSchema | None, name: str) -> ColumnType | None:
    if known is None or name in known.retypable:
        return None
    index = known.schema.get_field_index(name)
    return None if index < 0 else column_type_of(known.schema.field(index).type)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
