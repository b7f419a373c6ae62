"""Which type a column gets: the table's existing type, else the spec's, else inferred.

Inference from the kinds of values one batch holds (nulls ignored):
all integers -> integer; integers and floats -> float; all booleans -> boolean; all strings
-> string; only objects/arrays -> json; any other mix -> string (non-strings as JSON text);
only nulls -> string, reported as retypable so a later batch may still choose the type.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from rawquery_workers.spec.models import ColumnType
from rawquery_workers.transform.coerce import ARROW_TYPES, Kinds

ICEBERG_NAMES: dict[str, str] = {
    "string": "string",
    "json": "string",
    "integer": "long",
    "float": "double",
    "boolean": "boolean",
    "timestamp": "timestamptz",
    "date": "date",
}
_KIND_NAMES: dict[frozenset[type], str] = {
    frozenset({str}): "strings",
    frozenset({int}): "integers",
    frozenset({float}): "floats",
    frozenset({int, float}): "numbers",
    frozenset({bool}): "booleans",
    frozenset({dict}): "objects",
    frozenset({list}): "arrays",
    frozenset({dict, list}): "objects and arrays",
}


@dataclass(frozen=True, slots=True)
class Resolved:
    """The type chosen for a column; `inferred` when it came from the values alone."""

    type: ColumnType
    inferred: bool = False
    retypable: bool = False
    warning: str | None = None


def infer_type(kinds: Kinds) -> ColumnType | None:
    """The type the values' kinds call for; None when there are only nulls."""
    if not kinds:
        return None
    if kinds == {bool}:
        return "boolean"
    if kinds == {int}:
        return "integer"
    if kinds <= {int, float}:
        return "float"
    if kinds == {str}:
        return "string"
    if kinds <= {dict, list}:
        return "json"
    return "string"


def column_type_of(arrow_type: pa.DataType) -> ColumnType | None:
    """The column type an existing table column holds, None for types rawquery never makes."""
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    return None


def describe_kinds(kinds: Kinds) -> str:
    return _KIND_NAMES.get(kinds, "mixed values")


def resolve_type(
    label: str, kinds: Kinds, declared: ColumnType | None, existing: ColumnType | None
) -> Resolved:
    """`existing` is the table's type for the column (None: new or still retypable)."""
    inferred = infer_type(kinds)
    if existing is None:
        if declared is not None:
            return Resolved(declared)
        if inferred is None:
            return Resolved("string", inferred=True, retypable=True)
        return Resolved(inferred, inferred=True)
    candidate = declared or inferred
    if candidate is None or _fits(candidate, existing):
        return Resolved(candidate if candidate and _same(candidate, existing) else existing)
    table = ICEBERG_NAMES[existing]
    sent = (
        f"the spec declares {candidate}" if declared else f"this sync sent {describe_kinds(kinds)}"
    )
    return Resolved(
        existing,
        warning=f"type conflict: column {label} is {table} in the table but {sent}; kept {table}",
    )


def _same(candidate: ColumnType, existing: ColumnType) -> bool:
    return bool(ARROW_TYPES[candidate] == ARROW_TYPES[existing])


def _fits(candidate: ColumnType, existing: ColumnType) -> bool:
    """Values of `candidate` go into an `existing` column without a change of meaning."""
    return _same(candidate, existing) or (candidate, existing) == ("integer", "float")
