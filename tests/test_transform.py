"""transform_records: one test per rule, with the exact Arrow tables expected."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from rawquery_workers.errors import TransformError
from rawquery_workers.spec.models import Stream
from rawquery_workers.transform import KnownSchema, TableBatch, transform_records
from rawquery_workers.transform.coerce import coerce, read_values

S, INT, F, B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
TS, D = pa.timestamp("us", tz="UTC"), pa.date32()


def stream(**fields: Any) -> Stream:
    return Stream.model_validate({"name": "orders", "endpoint": "/orders", **fields})


def table(
    columns: dict[str, tuple[pa.DataType, list[Any]]], key: list[Any] | None = None
) -> pa.Table:
    """Expected data: the columns, then `_rq_rejected` (null unless given), then `_rq_key`."""
    rows = len(next(iter(columns.values()))[1]) if columns else 0
    columns = dict(columns)
    columns.setdefault("_rq_rejected", (S, [None] * rows))
    if key is not None:
        columns["_rq_key"] = (S, key)
    schema = pa.schema([pa.field(n, t) for n, (t, _) in columns.items()])
    return pa.table({n: pa.array(v, t) for n, (t, v) in columns.items()}, schema=schema)


def assert_data(batch: TableBatch, expected: pa.Table) -> None:
    assert batch.data.schema == expected.schema, f"{batch.data.schema}\n!=\n{expected.schema}"
    assert batch.data.to_pylist() == expected.to_pylist()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- flatten ---------------------------------------------------------------------------------


def test_nested_objects_and_arrays_are_json_by_default() -> None:
    result = transform_records(
        stream(), [{"id": 1, "address": {"city": "Paris"}, "tags": ["a", "b"], "n": None}]
    )
    assert_data(
        result.tables[0],
        table(
            {
                "id": (INT, [1]),
                "address": (S, ['{"city":"Paris"}']),
                "tags": (S, ['["a","b"]']),
                "n": (S, [None]),
            }
        ),
    )
    assert result.tables[0].retypable == {"n"}
    assert result.warnings == []


def test_prefix_flattens_nested_objects_recursively() -> None:
    records = [{"address": {"city": "Paris", "geo": {"lat": 48.8}}}, {"address": None}]
    result = transform_records(stream(flatten={"address": "prefix"}), records)
    assert_data(
        result.tables[0],
        table({"address_city": (S, ["Paris", None]), "address_geo_lat": (F, [48.8, None])}),
    )


def test_dotted_path_overrides_inside_a_prefixed_object() -> None:
    records = [{"address": {"city": "Paris", "geo": {"lat": 48.8}}}]
    result = transform_records(
        stream(flatten={"address": "prefix", "address.geo": "json"}), records
    )
    assert_data(
        result.tables[0],
        table({"address_city": (S, ["Paris"]), "address_geo": (S, ['{"lat":48.8}'])}),
    )


def test_a_named_deeper_path_prefixes_its_unnamed_parents() -> None:
    records = [{"meta": {"owner": {"name": "ann"}, "note": "x"}}]
    result = transform_records(stream(flatten={"meta.owner": "lift"}), records)
    assert_data(result.tables[0], table({"meta_name": (S, ["ann"]), "meta_note": (S, ["x"])}))


def test_lift_moves_keys_up_and_keeps_deeper_objects_as_json() -> None:
    records = [{"id": 1, "properties": {"email": "a@b.c", "extra": {"k": 1}}}]
    result = transform_records(stream(flatten={"properties": "lift"}), records)
    assert_data(
        result.tables[0],
        table({"id": (INT, [1]), "email": (S, ["a@b.c"]), "extra": (S, ['{"k":1}'])}),
    )


def test_lifted_key_colliding_with_a_top_level_key_gets_a_suffix() -> None:
    records = [{"properties": {"id": "p1", "x": 1}, "id": 7}]
    result = transform_records(stream(flatten={"properties": "lift"}), records)
    assert_data(result.tables[0], table({"id_2": (S, ["p1"]), "x": (INT, [1]), "id": (INT, [7])}))
    assert (
        result.warnings
        == result.renames
        == [
            'orders: API field "properties.id" lands as column "id_2" '
            '(it collides with column "id")'
        ]
    )


def test_collision_names_do_not_depend_on_key_order() -> None:
    rules = stream(flatten={"a": "prefix"})
    one = transform_records(rules, [{"a_b": 1, "a": {"b": 2}}]).tables[0].data
    two = transform_records(rules, [{"a": {"b": 2}, "a_b": 1}]).tables[0].data
    assert one.column("a_b").to_pylist() == two.column("a_b").to_pylist() == [1]
    assert one.column("a_b_2").to_pylist() == two.column("a_b_2").to_pylist() == [2]


def test_non_object_value_of_a_flattened_field_keeps_the_field_name() -> None:
    records = [{"address": {"city": "Paris"}}, {"address": "unknown"}]
    result = transform_records(stream(flatten={"address": "prefix"}), records)
    assert_data(
        result.tables[0],
        table({"address": (S, [None, "unknown"]), "address_city": (S, ["Paris", None])}),
    )


def test_odd_keys_are_kept_and_reserved_ones_renamed() -> None:
    records = [{"first name": "a", "a.b": 1, "città": True, "": 2, "_rq_key": "x"}]
    result = transform_records(stream(), records)
    assert_data(
        result.tables[0],
        table(
            {
                "first name": (S, ["a"]),
                "a.b": (INT, [1]),
                "città": (B, [True]),
                "_": (INT, [2]),
                "api_rq_key": (S, ["x"]),
            }
        ),
    )


def test_names_differing_only_in_case_collide_and_lower_case_keeps_the_name() -> None:
    """SQL engines (DuckDB in `rq query`) take `ID` and `id` for one column."""
    upper_first = transform_records(stream(), [{"ID": "u", "id": 1}])
    assert_data(upper_first.tables[0], table({"ID_2": (S, ["u"]), "id": (INT, [1])}))
    lower_first = transform_records(stream(), [{"id": 1, "ID": "u"}])
    assert_data(lower_first.tables[0], table({"id": (INT, [1]), "ID_2": (S, ["u"])}))
    for result in (upper_first, lower_first):
        assert result.renames == [
            'orders: API field "ID" lands as column "ID_2" (it collides with column "id")'
        ]


def test_reserved_names_in_any_case_and_empty_names_are_reported() -> None:
    result = transform_records(stream(), [{"": 1, "_RQ_KEY": 2, "_rq_x": 3}])
    assert result.tables[0].data.column_names == ["_", "api_RQ_KEY", "api_rq_x", "_rq_rejected"]
    reserved = "names starting with _rq_ are reserved for rawquery's columns"
    assert (
        result.renames
        == result.warnings
        == [
            'orders: API field "" lands as column "_" (a column name cannot be empty)',
            f'orders: API field "_RQ_KEY" lands as column "api_RQ_KEY" ({reserved})',
            f'orders: API field "_rq_x" lands as column "api_rq_x" ({reserved})',
        ]
    )


def test_a_case_variant_of_a_table_column_gets_a_suffix() -> None:
    known = {"orders": KnownSchema(pa.schema([("email", S), ("Email_2", S)]))}
    result = transform_records(stream(), [{"Email": "a"}], known)
    assert result.tables[0].data.column_names == ["Email_2", "_rq_rejected"]
    assert result.renames == [
        'orders: API field "Email" lands as column "Email_2" (the table has column "email")'
    ]
    exact = transform_records(stream(), [{"email": "a"}], known)  # the table's own name
    assert exact.tables[0].data.column_names == ["email", "_rq_rejected"]
    assert exact.renames == []


def test_records_that_are_not_objects_land_in_a_value_column() -> None:
    result = transform_records(stream(), [1, 2])  # type: ignore[list-item]
    assert_data(result.tables[0], table({"value": (INT, [1, 2])}))


def test_no_records_give_empty_tables() -> None:
    spec = stream(primary_key=["id"], expand={"items": {"primary_key": "id", "parent_key": "oid"}})
    result = transform_records(spec, [])
    assert [t.data.num_rows for t in result.tables] == [0, 0]
    assert result.tables[0].data.column_names == ["id", "_rq_rejected", "_rq_key"]
    assert result.tables[1].parent_keys is not None and len(result.tables[1].parent_keys) == 0


# --- expand ----------------------------------------------------------------------------------

EXPAND = {"line_items": {"primary_key": "id", "parent_key": "order_id"}}


def test_expand_moves_items_to_a_child_table_keyed_by_the_parent() -> None:
    records = [
        {"id": 1, "line_items": [{"id": "a", "qty": 2}, {"id": "b", "price": "9.5"}]},
        {"id": 2, "line_items": []},
        {"id": 3},
    ]
    result = transform_records(stream(primary_key=["id"], expand=EXPAND), records)
    parent, child = result.tables
    assert_data(parent, table({"id": (INT, [1, 2, 3])}, key=["1", "2", "3"]))
    assert_data(
        child,
        table(
            {
                "order_id": (INT, [1, 1]),
                "id": (S, ["a", "b"]),
                "qty": (INT, [2, None]),
                "price": (S, [None, "9.5"]),
            },
            key=["a", "b"],
        ),
    )
    assert (child.name, child.keys, child.parent_key, child.parent) == (
        "orders_line_items",
        ("id",),
        "order_id",
        "orders",
    )
    assert child.parent_keys is not None and child.parent_keys.to_pylist() == [1, 2, 3]
    assert parent.keys == ("id",) and parent.parent_key is None


def test_expand_with_a_two_column_key_writes_a_json_array() -> None:
    records = [{"id": 1, "region": "eu", "line_items": [{"id": 5}]}]
    spec = stream(primary_key=["id", "region"], expand=EXPAND)
    parent, child = transform_records(spec, records).tables
    assert parent.data.column("_rq_key").to_pylist() == ['[1,"eu"]']
    assert_data(child, table({"order_id": (S, ['[1,"eu"]']), "id": (INT, [5])}, key=["5"]))
    assert child.parent_keys is not None and child.parent_keys.to_pylist() == ['[1,"eu"]']


def test_expanded_scalars_become_a_value_column() -> None:
    spec = stream(
        primary_key=["id"], expand={"tags": {"primary_key": "value", "parent_key": "oid"}}
    )
    child = transform_records(spec, [{"id": 1, "tags": ["x", "y"]}]).tables[1]
    assert_data(child, table({"oid": (INT, [1, 1]), "value": (S, ["x", "y"])}, key=["x", "y"]))


def test_item_field_named_like_the_parent_key_gets_a_suffix() -> None:
    records = [{"id": 1, "line_items": [{"id": 5, "order_id": 99}]}]
    result = transform_records(stream(primary_key=["id"], expand=EXPAND), records)
    assert result.tables[1].data.column_names[:3] == ["order_id", "id", "order_id_2"]
    assert (
        result.warnings
        == result.renames
        == [
            'orders_line_items: API field "order_id" lands as column "order_id_2" '
            '(it collides with column "order_id")'
        ]
    )


def test_child_items_follow_flatten_types_include_and_rename() -> None:
    spec = stream(
        primary_key=["id"],
        expand=EXPAND,
        flatten={"line_items.product": "prefix", "dims": "prefix"},
        types={"price": "float", "line_items.qty": "string"},
        fields={
            "include": [
                "id",
                "line_items.product_sku",
                "line_items.qty",
                "line_items.dims_w",
                "line_items.price",
            ],
            "rename": {"line_items.product_sku": "sku"},
        },
    )
    item = {
        "id": 5,
        "product": {"sku": "S1", "name": "n"},
        "qty": 2,
        "price": "9.5",
        "dims": {"w": 1},
    }
    child = transform_records(spec, [{"id": 1, "line_items": [item]}]).tables[1]
    assert_data(
        child,
        table(
            {
                "order_id": (INT, [1]),
                "id": (INT, [5]),
                "sku": (S, ["S1"]),
                "qty": (S, ["2"]),
                "price": (F, [9.5]),
                "dims_w": (INT, [1]),
            },
            key=["5"],
        ),
    )


def test_children_follow_the_kept_parent_row() -> None:
    spec = stream(primary_key=["id"], cursor_field="v", expand=EXPAND)
    records = [
        {"id": 1, "v": 2, "line_items": [{"id": "new"}]},
        {"id": 1, "v": 1, "line_items": [{"id": "old1"}, {"id": "old2"}]},
    ]
    parent, child = transform_records(spec, records).tables
    assert parent.data.column("v").to_pylist() == [2]
    assert child.data.column("id").to_pylist() == ["new"]


# --- fields ----------------------------------------------------------------------------------


def test_include_keeps_listed_and_key_columns_and_rename_comes_last() -> None:
    spec = stream(
        primary_key=["id"],
        types={"created_at": "date"},
        fields={
            "include": ["name", "created_at"],
            "rename": {"created_at": "created", "id": "ext_id"},
        },
    )
    records = [{"id": 1, "name": "a", "secret": "s", "created_at": "2024-01-31T10:00:00Z"}]
    batch = transform_records(spec, records).tables[0]
    assert_data(
        batch,
        table(
            {"ext_id": (INT, [1]), "name": (S, ["a"]), "created": (D, [date(2024, 1, 31)])},
            key=["1"],
        ),
    )
    assert batch.keys == ("ext_id",)


def test_rename_onto_an_existing_name_moves_the_other_column() -> None:
    spec = stream(fields={"rename": {"title": "name"}})
    result = transform_records(spec, [{"name": "n", "title": "t"}])
    assert_data(result.tables[0], table({"name_2": (S, ["n"]), "name": (S, ["t"])}))
    assert (
        result.warnings
        == result.renames
        == ['orders: API field "name" lands as column "name_2" (it collides with column "name")']
    )


# --- types -----------------------------------------------------------------------------------

CASES = [
    ("integer", ["42", 42, 42.0, " 7 ", "4.2e1", "-3", None], [42, 42, 42, 7, 42, -3, None]),
    ("float", ["12.50", 3, 2.5, "1e3", " 2 ", None], [12.5, 3.0, 2.5, 1000.0, 2.0, None]),
    (
        "boolean",
        [True, "false", "1", "0", 1, 0, "yes", "No", " on ", None],
        [True, False, True, False, True, False, True, False, True, None],
    ),
    (
        "timestamp",
        [
            "2024-01-31T10:00:00Z",
            "2024-01-31T12:00:00+02:00",
            "2024-01-31T10:00:00.5-0100",
            "2024-01-31 10:00:00",
            "2024-01-31",
            1706695200,
            1706695200000,
            "1706695200",
            1706695200.5,
        ],
        [
            utc(2024, 1, 31, 10),
            utc(2024, 1, 31, 10),
            datetime(2024, 1, 31, 11, 0, 0, 500000, tzinfo=UTC),
            utc(2024, 1, 31, 10),
            utc(2024, 1, 31),
            utc(2024, 1, 31, 10),
            utc(2024, 1, 31, 10),
            utc(2024, 1, 31, 10),
            datetime(2024, 1, 31, 10, 0, 0, 500000, tzinfo=UTC),
        ],
    ),
    (
        "date",
        ["2024-01-31", "2024-01-31T23:30:00-05:00", 1706695200, "2024-02-01T00:00:00Z"],
        [date(2024, 1, 31), date(2024, 1, 31), date(2024, 1, 31), date(2024, 2, 1)],
    ),
    ("string", ["a", 1, 2.5, True, {"k": [1]}], ["a", "1", "2.5", "true", '{"k":[1]}']),
    ("json", ["a", 1, {"k": None}, [1, "x"]], ['"a"', "1", '{"k":null}', '[1,"x"]']),
]


@pytest.mark.parametrize(("column_type", "values", "expected"), CASES, ids=[c[0] for c in CASES])
def test_declared_types_accept_real_api_forms(
    column_type: str, values: list[Any], expected: list[Any]
) -> None:
    result = transform_records(stream(types={"v": column_type}), [{"v": v} for v in values])
    data = result.tables[0].data
    assert data.column("v").to_pylist() == expected
    assert data.column("_rq_rejected").null_count == len(values)
    assert result.warnings == []


@pytest.mark.parametrize(
    ("column_type", "bad"),
    [
        ("integer", [4.5, "abc", True, 2**70, "9223372036854775808"]),
        ("float", ["x", True, {"a": 1}]),
        ("boolean", ["maybe", 2, 0.5]),
        ("timestamp", ["yesterday", True, "2024-13-01T00:00:00Z", 10**20]),
        ("date", ["31/01/2024", False]),
    ],
)
def test_unreadable_values_go_to_rq_rejected(column_type: str, bad: list[Any]) -> None:
    records = [{"v": b, "n": i} for i, b in enumerate(bad)]
    result = transform_records(stream(types={"v": column_type}), records)
    data = result.tables[0].data
    assert data.column("v").null_count == len(bad)
    assert data.column("_rq_rejected").to_pylist() == ['{"v":' + _dump(b) + "}" for b in bad]
    assert result.warnings == [
        f"column 'v': {len(bad)} values could not be read as {column_type}; kept in _rq_rejected"
    ]


def _dump(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def test_vectorised_and_per_value_reading_agree_within_one_column() -> None:
    # "42" is cast by Arrow, " 43" and "4.4e1" by the per-value parser, "x" is rejected.
    got = coerce(read_values(["42", " 43", None, "x", "4.4e1"]), "integer")
    assert got.array.to_pylist() == [42, 43, None, None, 44]
    assert got.rejected == {3: "x"}


def test_rejections_of_several_columns_share_one_json_object() -> None:
    spec = stream(types={"a": "integer", "b": "boolean"})
    data = transform_records(spec, [{"a": "x", "b": "maybe"}, {"a": 1, "b": True}]).tables[0].data
    assert data.column("_rq_rejected").to_pylist() == ['{"a":"x","b":"maybe"}', None]


# --- inference -------------------------------------------------------------------------------


def test_inference_from_the_values_of_the_batch() -> None:
    records = [
        {"i": 1, "f": 1, "b": True, "s": "x", "m": 1, "n": None, "o": {"k": 1}, "big": 2**70},
        {"i": 2, "f": 2.5, "b": False, "s": "y", "m": "a", "n": None, "o": [1], "big": 1},
    ]
    result = transform_records(stream(), records)
    assert_data(
        result.tables[0],
        table(
            {
                "i": (INT, [1, 2]),
                "f": (F, [1.0, 2.5]),
                "b": (B, [True, False]),
                "s": (S, ["x", "y"]),
                "m": (S, ["1", "a"]),
                "n": (S, [None, None]),
                "o": (S, ['{"k":1}', "[1]"]),
                "big": (S, [str(2**70), "1"]),
            }
        ),
    )
    assert result.tables[0].retypable == {"n"}
    assert result.warnings == ["column 'big': integers beyond 64 bits; stored as string"]


# --- known schemas ---------------------------------------------------------------------------


def known(**types: pa.DataType) -> dict[str, KnownSchema]:
    return {"orders": KnownSchema(pa.schema([pa.field(n, t) for n, t in types.items()]))}


def test_an_existing_column_keeps_its_type() -> None:
    records = [{"x": "12"}, {"x": "twelve"}]
    result = transform_records(stream(), records, known=known(x=INT))
    assert_data(
        result.tables[0],
        table({"x": (INT, [12, None])} | {"_rq_rejected": (S, [None, '{"x":"twelve"}'])}),
    )
    assert result.warnings == [
        "type conflict: column 'x' is long in the table but this sync sent strings; kept long",
        "column 'x': 1 value could not be read as integer; kept in _rq_rejected",
    ]


def test_existing_type_wins_over_a_changed_declaration() -> None:
    result = transform_records(stream(types={"x": "float"}), [{"x": 1.5}], known=known(x=S))
    assert result.tables[0].data.column("x").to_pylist() == ["1.5"]
    assert result.warnings == [
        "type conflict: column 'x' is string in the table but the spec declares float; kept string"
    ]


def test_integers_into_a_double_column_are_widened_silently() -> None:
    result = transform_records(stream(), [{"x": 1}], known=known(x=F))
    assert result.tables[0].data.column("x").type == F
    assert result.warnings == []


def test_known_names_are_final_names() -> None:
    spec = stream(fields={"rename": {"x": "y"}})
    result = transform_records(spec, [{"x": "5"}], known=known(y=INT))
    assert result.tables[0].data.column("y").to_pylist() == [5]


def test_a_retypable_column_takes_the_new_type() -> None:
    schema = KnownSchema(pa.schema([pa.field("x", S)]), retypable=frozenset({"x"}))
    result = transform_records(stream(), [{"x": 3}], known={"orders": schema})
    assert result.tables[0].data.column("x").type == INT
    assert result.tables[0].retypable == frozenset()
    assert result.warnings == []


def test_child_tables_use_their_own_known_schema() -> None:
    schemas = {"orders_line_items": KnownSchema(pa.schema([pa.field("qty", F)]))}
    spec = stream(primary_key=["id"], expand=EXPAND)
    records = [{"id": 1, "line_items": [{"id": 1, "qty": 2}]}]
    child = transform_records(spec, records, known=schemas).tables[1]
    assert child.data.column("qty").type == F


# --- cursor and duplicates -------------------------------------------------------------------


def test_a_key_value_that_does_not_fit_the_table_column_is_refused() -> None:
    known = {"orders": KnownSchema(pa.schema([("id", INT)]))}
    with pytest.raises(TransformError) as refused:
        transform_records(stream(primary_key=["id"]), [{"id": 2**64}, {"id": 1}], known)
    assert str(refused.value) == (
        "stream orders: primary key column 'id' holds 18446744073709551616, which does not "
        'fit its long column; declare "types": {"id": "string"} in the stream and re-create '
        "the table, whose column keeps its type otherwise (rq connections delete CONNECTION "
        "--drop-tables, then rq connect and sync again)"
    )


def test_a_key_value_that_does_not_fit_its_declared_type_is_refused() -> None:
    spec = stream(primary_key=["ref"], types={"ref": "integer"}, fields={"rename": {"ref": "r"}})
    with pytest.raises(TransformError) as refused:
        transform_records(spec, [{"ref": "a1"}, {"ref": "b2"}, {"ref": 3}])
    assert str(refused.value) == (
        "stream orders: primary key 'ref' (column 'r') holds \"a1\", which does not fit its "
        'long column (nor do 1 more of its values); declare "types": {"ref": "string"} in '
        "the stream"
    )


def test_a_child_item_without_its_key_is_refused() -> None:
    records = [{"id": 1, "line_items": [{"id": 5}, {"sku": "no id"}]}]
    with pytest.raises(TransformError) as refused:
        transform_records(stream(primary_key=["id"], expand=EXPAND), records)
    assert str(refused.value) == (
        "stream orders, table orders_line_items: 1 item has no value (missing or null) for "
        "primary key column 'id', which every row of a keyed table needs; check that "
        "expand.line_items.primary_key names a field every item has (names are the API's, "
        "after flatten)"
    )


def test_records_before_the_saved_cursor_are_dropped_comparing_instants() -> None:
    spec = stream(cursor_field="updated", types={"updated": "timestamp"})
    records = [
        {"id": 1, "updated": "2024-01-31T11:00:00+02:00"},  # 09:00Z: before
        {"id": 2, "updated": "2024-01-31T10:00:00Z"},  # equal: kept
        {"id": 3, "updated": None},  # no cursor: kept
        {"id": 4, "updated": 1706698800},  # 11:00Z
    ]
    result = transform_records(spec, records, since_cursor="2024-01-31T10:00:00+00:00")
    assert result.tables[0].data.column("id").to_pylist() == [2, 3, 4]
    assert result.records_dropped_by_cursor == 1
    assert result.records_in == 4
    assert result.max_cursor == "2024-01-31T11:00:00+00:00"
    assert result.tables[0].data.schema.field("updated").type == TS


@pytest.mark.parametrize(
    ("values", "since", "kept", "max_cursor"),
    [
        ([9, 10, 100], "10", [10, 100], "100"),  # numbers, not text ("9" > "10")
        ([1.5, 2.5], "2", [2.5], "2.5"),
        (["b", "a", "c"], "b", ["b", "c"], "c"),
    ],
)
def test_cursor_comparison_follows_the_column_type(
    values: list[Any], since: str, kept: list[Any], max_cursor: str
) -> None:
    result = transform_records(stream(cursor_field="c"), [{"c": v} for v in values], None, since)
    assert result.tables[0].data.column("c").to_pylist() == kept
    assert result.max_cursor == max_cursor


def test_unreadable_saved_cursor_drops_nothing_and_warns() -> None:
    spec = stream(cursor_field="c", types={"c": "timestamp"})
    result = transform_records(spec, [{"c": "2024-01-01T00:00:00Z"}], since_cursor="soon")
    assert result.tables[0].data.num_rows == 1
    assert result.warnings == [
        "saved cursor 'soon' cannot be read as timestamp; no records were dropped by it"
    ]


def test_duplicates_keep_the_newest_record() -> None:
    spec = stream(primary_key=["id"], cursor_field="v")
    records = [
        {"id": 1, "v": 3, "n": "newest"},
        {"id": 1, "v": 1, "n": "old"},
        {"id": 2, "v": 5, "n": "first"},
        {"id": 2, "v": 5, "n": "tie: later wins"},
        {"id": 3, "v": None, "n": "no cursor"},
        {"id": 3, "v": 0, "n": "has a cursor"},
    ]
    data = transform_records(spec, records).tables[0].data
    assert data.column("n").to_pylist() == ["newest", "tie: later wins", "has a cursor"]


def test_duplicates_without_cursor_keep_the_later_record() -> None:
    records = [{"id": "1", "n": "a"}, {"id": 1, "n": "b"}]
    spec = stream(primary_key=["id"], types={"id": "integer"})
    data = transform_records(spec, records).tables[0].data
    assert data.column("n").to_pylist() == ["b"]


def test_records_without_a_key_value_are_refused() -> None:
    spec = stream(primary_key=["id"])
    with pytest.raises(TransformError) as refused:
        transform_records(spec, [{"id": None}, {"x": 1}, {"id": 1}])
    assert str(refused.value) == (
        "stream orders: 2 records have no value (missing or null) for primary key column "
        "'id', which every row of a keyed table needs; check that primary_key names a field "
        "every record has (names are the API's, after flatten)"
    )
    # Only the records kept count: one the saved cursor drops is no problem.
    spec = stream(primary_key=["id"], cursor_field="v")
    result = transform_records(spec, [{"id": None, "v": 1}, {"id": 2, "v": 5}], since_cursor="3")
    assert result.tables[0].data.column("_rq_key").to_pylist() == ["2"]


def test_lone_surrogates_from_json_escapes_do_not_break_utf8() -> None:
    records = [{"k\ud800": "a\udc00", "n": "x\ud800"}, {"k\ud800": "b", "n": 1}]
    spec = stream(types={"n": "integer"})
    result = transform_records(spec, records)
    data = result.tables[0].data
    assert data.column_names[0] == "k\\ud800"
    assert data.column("k\\ud800").to_pylist() == ["a\\udc00", "b"]
    assert data.column("_rq_rejected").to_pylist() == ['{"n":"x\\ud800"}', None]


def test_a_single_object_to_expand_is_one_item_even_with_qualified_flatten() -> None:
    spec = stream(primary_key=["id"], expand=EXPAND, flatten={"line_items.product": "prefix"})
    records = [{"id": 1, "line_items": {"id": 5, "product": {"sku": "S"}}}]
    parent, child = transform_records(spec, records).tables
    assert parent.data.column_names == ["id", "_rq_rejected", "_rq_key"]
    assert_data(
        child, table({"order_id": (INT, [1]), "id": (INT, [5]), "product_sku": (S, ["S"])}, ["5"])
    )


@pytest.mark.parametrize("column_type", ["timestamp", "date"])
@pytest.mark.parametrize("role", ["primary_key", "cursor_field"])
def test_epoch_numbers_before_year_one_are_rejected_not_a_crash(
    column_type: str, role: str
) -> None:
    """-1e14 s is year -1199: read one by one it was rejected, vectorised it was kept and
    crashed the key or cursor step; both ways now reject it (a key value that is rejected
    refuses the batch: keys.py)."""
    spec = {"primary_key": ["id"]} if role == "primary_key" else {"cursor_field": "id"}
    records: list[dict[str, Any]] = [{"id": -100_000_000_000_000}, {"id": 0}]
    if role == "primary_key":
        with pytest.raises(TransformError, match="holds -100000000000000, which does not fit"):
            transform_records(stream(types={"id": column_type}, **spec), records)
        return
    result = transform_records(stream(types={"id": column_type}, **spec), records)
    data = result.tables[0].data
    assert data.column("id").null_count == 1
    assert data.column("_rq_rejected").to_pylist()[0] == '{"id":-100000000000000}'


def test_the_stream_table_carries_partition_by_and_sort_by_by_final_names() -> None:
    s = stream(
        primary_key=["id"],
        partition_by=["state", "day(created)", "month(_rq_synced_at)"],
        sort_by=["id", "state"],
        fields={"rename": {"state": "status"}},
        types={"created": "timestamp"},
        expand={"items": {"primary_key": "id", "parent_key": "order_id"}},
    )
    records = [{"id": 1, "state": "open", "created": "2024-03-01T00:00:00Z", "items": []}]
    parent, child = transform_records(s, records).tables
    assert parent.layout.partition_by == (
        ("identity", "status"),
        ("day", "created"),
        ("month", "_rq_synced_at"),
    )
    assert parent.layout.sort_by == ("id", "status")
    assert child.layout.partition_by == () and child.layout.sort_by == ()
