"""Arrow <-> Iceberg column types, and how a batch evolves a table's schema.

Stored types (INTERFACE.md): long, double, boolean, string, timestamptz (microseconds,
UTC), date; every column is optional but a keyed table's primary-key columns, which are
required and declared as its identifier fields (sink/layout.py). A column that has held
only nulls so far is stored as string and listed in the table property `rq.retypable` (a
JSON array): when real values arrive with another type, the column is deleted and added
again under the same name with that type (a new field id: the old files never wrote it,
see writer.py, so they read null).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.table import TableProperties
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DoubleType,
    IcebergType,
    LongType,
    StringType,
    TimestamptzType,
)

from rawquery_workers.errors import SinkError
from rawquery_workers.transform.batch import KEY, SYNCED_AT, KnownSchema, TableBatch

RETYPABLE = "rq.retypable"
FIELD_ID = b"PARQUET:field_id"  # the Arrow field metadata key pyarrow writes as a Parquet field id
TIMESTAMP = pa.timestamp("us", tz="UTC")

# Set on every table rawquery creates. pyiceberg's own commit retry is off: it re-applies
# appends without checking what landed meanwhile; IcebergSink retries itself (iceberg.py).
CREATE_PROPERTIES = {
    TableProperties.FORMAT_VERSION: "2",
    TableProperties.COMMIT_NUM_RETRIES: "0",
    TableProperties.METADATA_DELETE_AFTER_COMMIT_ENABLED: "true",
    TableProperties.METADATA_PREVIOUS_VERSIONS_MAX: "2",
    # commits merge manifests once a head lists 8 (sink/copy_on_write.py, sink/maintenance.py)
    TableProperties.MANIFEST_MERGE_ENABLED: "true",
    TableProperties.MANIFEST_MIN_MERGE_COUNT: "8",
}

_ICEBERG_TYPES: dict[pa.DataType, IcebergType] = {
    pa.bool_(): BooleanType(),
    pa.int64(): LongType(),
    pa.float64(): DoubleType(),
    pa.string(): StringType(),
    TIMESTAMP: TimestamptzType(),
    pa.date32(): DateType(),
    pa.binary(): BinaryType(),
}


def storage_type(arrow_type: pa.DataType, where: str) -> pa.DataType:
    """The Arrow type a column of `arrow_type` is stored as (`where` names it in errors)."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    if pa.types.is_timestamp(t):
        return TIMESTAMP
    if pa.types.is_date(t):
        return pa.date32()
    if pa.types.is_boolean(t):
        return pa.bool_()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.binary()
    raise SinkError(
        f"{where}: Arrow type {arrow_type} cannot be stored; columns must be long, double, "
        "boolean, string, timestamp, date (nested values are stored as JSON strings)"
    )


def iceberg_type(arrow_type: pa.DataType) -> IcebergType:
    return _ICEBERG_TYPES[arrow_type]


_ARROW_TYPES: dict[IcebergType, pa.DataType] = {v: k for k, v in _ICEBERG_TYPES.items()}
_CONVERTED: dict[int, tuple[Schema, pa.Schema]] = {}  # arrow_schema's, by id(), oldest first
_CONVERTED_LOCK = threading.Lock()
_CONVERTED_KEPT = 64


def arrow_schema(schema: Schema) -> pa.Schema:
    """The table's columns as plain Arrow types (string, not large_string), each with its
    Iceberg field id as `PARQUET:field_id` metadata, which pyarrow writes into Parquet files:
    engines that resolve columns by id (Daft, Spark, Trino) need it, and a column retyped
    under the same name (a new id) is never read from an old file's column. Required
    columns (primary keys) are non-nullable.

    Kept per Schema object: a sync converts its tables' schemas many times, the catalog
    hands out the same parsed object while the table's metadata is unchanged
    (sink/tables.py), and field metadata makes a 50,000-column conversion take ~0.5 s."""
    hit = _CONVERTED.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    converted = _convert(schema)
    with _CONVERTED_LOCK:
        _CONVERTED[id(schema)] = (schema, converted)  # holding `schema` keeps its id unique
        while len(_CONVERTED) > _CONVERTED_KEPT:
            _CONVERTED.pop(next(iter(_CONVERTED)))
    return converted


def _convert(schema: Schema) -> pa.Schema:
    try:  # the columns rawquery writes, by a dict: ~10x cheaper than pyiceberg's visitor
        return pa.schema(
            [
                pa.field(f.name, _ARROW_TYPES[f.field_type], f.optional, _field_id(f.field_id))
                for f in schema.fields
            ]
        )
    except KeyError:  # a type another engine added (decimal, struct, ...)
        pass
    fields = []
    for f in schema.as_arrow():  # nested fields carry their ids from pyiceberg's visitor
        t = f.type
        if pa.types.is_large_string(t):
            t = pa.string()
        elif pa.types.is_large_binary(t):
            t = pa.binary()
        fields.append(pa.field(f.name, t, f.nullable, f.metadata))
    return pa.schema(fields)


def _field_id(field_id: int) -> dict[bytes, bytes]:
    return {FIELD_ID: str(field_id).encode()}


def retypable_of(properties: Mapping[str, str]) -> frozenset[str]:
    raw = properties.get(RETYPABLE)
    return frozenset(json.loads(raw)) if raw else frozenset()


def retypable_property(names: frozenset[str]) -> dict[str, str]:
    return {RETYPABLE: json.dumps(sorted(names))}


def batch_schema(batch: TableBatch, where: str) -> tuple[pa.Schema, frozenset[str]]:
    """The stored schema a batch asks for (system columns included) and its all-null columns."""
    fields: list[pa.Field] = []
    null_only = set(batch.retypable)
    for f in batch.data.schema:
        if pa.types.is_null(f.type):
            null_only.add(f.name)
        fields.append(pa.field(f.name, storage_type(f.type, f"{where}.{f.name}")))
    if SYNCED_AT not in batch.data.column_names:
        fields.append(pa.field(SYNCED_AT, TIMESTAMP))
    return pa.schema(fields), frozenset(null_only)


def wanted_schema(batch: TableBatch, where: str) -> tuple[pa.Schema, frozenset[str]]:
    """`batch_schema`, plus `_rq_key` for a keyed table (a chunk may hold no rows)."""
    wanted, null_only = batch_schema(batch, where)
    if batch.keys and KEY not in wanted.names:
        wanted = wanted.append(pa.field(KEY, pa.string()))
    return wanted, null_only


def unchanged_by(known: KnownSchema, batch: TableBatch, where: str) -> bool:
    """Whether a table of schema `known` holds `batch` as it is (no prepare needed)."""
    wanted, null_only = wanted_schema(batch, where)
    return not plan_evolution(known.schema, known.retypable, wanted, null_only).changes(
        known.retypable
    )


@dataclass(frozen=True, slots=True)
class Evolution:
    """What a batch changes in a table: columns to add, columns to retype, the new
    retypable set, and one human-readable line per change."""

    adds: tuple[pa.Field, ...]
    retypes: tuple[pa.Field, ...]
    retypable: frozenset[str]
    lines: tuple[str, ...]

    @property
    def schema_changed(self) -> bool:
        return bool(self.adds or self.retypes)

    def changes(self, retypable: frozenset[str]) -> bool:
        """Whether applying it changes a table whose retypable columns are `retypable`."""
        return self.schema_changed or self.retypable != retypable


def plan_evolution(
    current: pa.Schema, retypable: frozenset[str], wanted: pa.Schema, null_only: frozenset[str]
) -> Evolution:
    """Compare the table (`current`, `retypable`) with a batch (`wanted`, `null_only`).

    Columns the table lacks are added; a retypable column the batch brings with real
    values of another type is retyped; any other type difference is left to the write,
    which casts (the transform step normally makes the batch's types match the table's).
    """
    adds: list[pa.Field] = []
    retypes: list[pa.Field] = []
    lines: list[str] = []
    still = set(retypable)
    existing = frozenset(current.names)  # one set: `Schema.names` is a new list each time
    for f in wanted:
        name, t = f.name, f.type
        if name not in existing:
            adds.append(f)
            if name in null_only:
                still.add(name)
                lines.append(f"added column '{name}' ({iceberg_type(t)}, all null so far)")
            else:
                lines.append(f"added column '{name}' ({iceberg_type(t)})")
            continue
        if name not in retypable or name in null_only:
            continue
        still.discard(name)
        old = current.field(name).type
        if old != t:
            retypes.append(f)
            lines.append(
                f"column '{name}' retyped from {iceberg_type(old)} (all null so far) "
                f"to {iceberg_type(t)}"
            )
    return Evolution(tuple(adds), tuple(retypes), frozenset(still), tuple(lines))
