"""The Arrow fast path of transform (transform/columnar.py) against the Python path.

Contract: whenever `read_pages` returns a struct array, `transform_records(..., parsed=it)`
gives exactly what `transform_records(...)` gives without it: the same tables in the same
order (schema, column order, types and values), keys, parent keys, warnings, cursor and
counts. When Arrow cannot read the bodies as the JSON parser does, `read_pages` is None.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from rawquery_workers.errors import TransformError
from rawquery_workers.http.client import parse_json
from rawquery_workers.spec.jsonpath import get_path
from rawquery_workers.spec.models import Stream
from rawquery_workers.transform import REJECTED, KnownSchema, TransformResult, transform_records
from rawquery_workers.transform.coerce import ARROW_TYPES
from rawquery_workers.transform.columnar import PageBodies, read_pages

BENCH = Path(__file__).resolve().parent.parent / "bench"
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # explain: too slow
)

# --- comparing the two paths ---------------------------------------------------------------


def make(**fields: Any) -> Stream:
    return Stream.model_validate({"name": "s", "endpoint": "/s", **fields})


def same_array(a: pa.Array | None, b: pa.Array | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.type == b.type and a.equals(b)


def assert_same(fast: TransformResult, slow: TransformResult) -> None:
    """`fast` (Arrow path) is exactly `slow` (Python path)."""
    assert [t.name for t in fast.tables] == [t.name for t in slow.tables]
    for f, s in zip(fast.tables, slow.tables, strict=True):
        assert f.data.schema.equals(s.data.schema, check_metadata=True), (
            f.name,
            f.data.schema,
            s.data.schema,
        )
        assert f.data.equals(s.data), (f.name, f.data.to_pylist(), s.data.to_pylist())
        assert f.keys == s.keys
        assert f.parent_key == s.parent_key
        assert f.parent == s.parent
        assert same_array(f.parent_keys, s.parent_keys), (f.parent_keys, s.parent_keys)
        assert f.retypable == s.retypable
    assert fast.warnings == slow.warnings
    assert fast.renames == slow.renames
    assert fast.max_cursor == slow.max_cursor
    assert fast.records_dropped_by_cursor == slow.records_dropped_by_cursor
    assert fast.records_in == slow.records_in


def read_both(
    bodies: list[bytes], data_path: str | None
) -> tuple[list[dict[str, Any]], pa.StructArray | None]:
    """The records as the JSON parser makes them from the bodies (http.parse_json, as
    extract does), and as `read_pages` reads them."""
    records: list[dict[str, Any]] = []
    counts = []
    for body in bodies:
        found = get_path(parse_json(body), data_path or "")
        assert isinstance(found, list)
        records += found
        counts.append(len(found))
    return records, read_pages(PageBodies(bodies, counts, data_path))


def both_paths(
    stream: Stream,
    bodies: list[bytes],
    since: str | None = None,
    known: dict[str, KnownSchema] | None = None,
) -> tuple[TransformResult, TransformResult]:
    """(Arrow path, Python path) of the bodies; fails when Arrow does not read them."""
    records, parsed = read_both(bodies, stream.data_path)
    assert parsed is not None, "Arrow did not read the bodies"
    fast = transform_records(stream, records, known, since, parsed=parsed)
    slow = transform_records(stream, records, known, since)
    return fast, slow


def data_bodies(pages: list[list[dict[str, Any]]]) -> list[bytes]:
    return [orjson.dumps({"data": page, "total": len(page)}) for page in pages]


# --- random records that Arrow can usually read --------------------------------------------

SCALAR_KINDS = [
    "int",
    "float",
    "mixed",
    "bool",
    "str",
    "timestamp",
    "numeric_str",
    "list_str",
    "list_int",
    "list_float",
    "empty_list",
    "empty_obj",
]
FIELD_NAMES = ["a", "b", "c", "when", "n", "x y", "é", "_rq_x", "a_b", "value", "", "k.1"]
SUB_NAMES = ["id", "a", "b", "city", "sku", "n"]
STAMP_FORMATS = [
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S+02:00",
    "%Y-%m-%dT%H:%M:%S.123Z",
    "%Y-%m-%dT%H:%M:%S",
]
TYPES = ["string", "integer", "float", "boolean", "timestamp", "date", "json"]

# A kind is a name from SCALAR_KINDS, or ("object" | "list_obj", {field: kind}).
Kind = str | tuple[str, dict[str, Any]]


def kinds(depth: int) -> st.SearchStrategy[Kind]:
    scalar = st.sampled_from(SCALAR_KINDS)
    if depth == 0:
        return scalar
    fields = st.dictionaries(st.sampled_from(SUB_NAMES), kinds(depth - 1), max_size=4)
    nested = st.tuples(st.sampled_from(["object", "list_obj"]), fields)
    return st.one_of(scalar, scalar, nested)


STAMPS = st.builds(
    lambda moment, fmt: moment.strftime(fmt),
    st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2150, 1, 1)),
    st.sampled_from(STAMP_FORMATS),
)
NUMERIC_STRINGS = (
    st.integers(-(10**12), 10**12).map(str)
    | st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr)
    | st.sampled_from(["007", "1e3", "-0", " 42 ", "4.2e1", "1.50", ".5"])
)
INTS = st.integers(-1000, 1000) | st.integers(-(10**18) + 1, 10**18 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(max_size=6) | st.sampled_from(["", "null", "true", '{"a":1}', "a\nb", '"q"'])


def values(kind: Kind) -> st.SearchStrategy[Any]:
    """Values of one kind (never null: `objects` adds nulls and missing keys)."""
    if isinstance(kind, tuple):
        shape, fields = kind
        one = objects(fields)
        return one if shape == "object" else st.lists(one, max_size=3)
    return {
        "int": INTS,
        "float": FLOATS,
        "mixed": INTS | FLOATS,
        "bool": st.booleans(),
        "str": TEXT,
        "timestamp": STAMPS,
        "numeric_str": NUMERIC_STRINGS,
        "list_str": st.lists(st.none() | TEXT, max_size=3),  # [null, "x"]: see below too
        "list_int": st.lists(st.none() | INTS, max_size=3),
        "list_float": st.lists(st.none() | FLOATS, max_size=3),
        "empty_list": st.just([]),
        "empty_obj": st.just({}),
        "small_int": st.integers(0, 4),  # primary keys: duplicates across records
        "key_str": st.sampled_from(["k0", "k1", "k2"]),
    }[kind]


@st.composite
def objects(draw: st.DrawFn, fields: dict[str, Kind]) -> dict[str, Any]:
    """An object of `fields`: some missing, some null, keys in any order."""
    out: dict[str, Any] = {}
    for name in draw(st.permutations(list(fields))):
        presence = draw(st.sampled_from(["value"] * 6 + ["null", "missing"]))
        if presence == "value":
            out[name] = draw(values(fields[name]))
        elif presence == "null":
            out[name] = None
    return out


def column_names(fields: dict[str, Kind], prefix: str = "") -> list[str]:
    """Names the columns may get (prefixed and lifted), for types/include/rename."""
    names = []
    for name, kind in fields.items():
        names.append(prefix + name)
        if isinstance(kind, tuple) and kind[0] == "object":
            names += column_names(kind[1], prefix + name + "_") + column_names(kind[1])
    return names


@st.composite
def flatten_modes(draw: st.DrawFn, fields: dict[str, Kind], skip: str | None) -> dict[str, str]:
    """A mode for some object fields, top-level or dotted, and for items of `skip`."""
    modes: dict[str, str] = {}
    mode = st.sampled_from(["prefix", "lift", "json"])

    def visit(path: str, kind: Kind) -> None:
        if not isinstance(kind, tuple):
            return
        for sub, sub_kind in kind[1].items():
            if isinstance(sub_kind, tuple) and draw(st.booleans()):
                modes[f"{path}.{sub}"] = draw(mode)
            visit(f"{path}.{sub}", sub_kind)

    for name, kind in fields.items():
        if name != skip and isinstance(kind, tuple) and kind[0] == "object" and draw(st.booleans()):
            modes[name] = draw(mode)
        visit(name, kind)
    return modes


@dataclass(frozen=True)
class Case:
    stream: Stream
    bodies: list[bytes]
    since: str | None = None
    known: dict[str, KnownSchema] | None = None


@st.composite
def known_schemas(draw: st.DrawFn, names: list[str]) -> KnownSchema:
    """A table already in the catalog with some of the columns, of any type."""
    types = draw(st.dictionaries(st.sampled_from(names), st.sampled_from(TYPES)))
    schema = pa.schema([pa.field(n, ARROW_TYPES[t]) for n, t in types.items()])
    return KnownSchema(schema, frozenset(draw(st.lists(st.sampled_from(names)))))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A stream spec, the page bodies of its records, a saved cursor and known schemas."""
    fields: dict[str, Kind] = draw(st.dictionaries(st.sampled_from(FIELD_NAMES), kinds(2)))
    fields["id"] = draw(st.sampled_from(["small_int", "key_str", "int"]))
    records = draw(st.lists(objects(fields), min_size=1, max_size=12))
    spec: dict[str, Any] = {}

    if fields["id"] != "int" or draw(st.booleans()):
        spec["primary_key"] = ["id"]
        scalars = [n for n, k in fields.items() if k in ("int", "str", "bool") and n != "id"]
        if scalars and draw(st.booleans()):
            spec["primary_key"].append(draw(st.sampled_from(scalars)))
        if draw(st.integers(0, 3)):  # mostly every key value present: a null one refuses all
            for record in records:
                for name in spec["primary_key"]:
                    if record.get(name) is None:
                        record[name] = draw(values(fields[name]))
    expandable = [n for n, k in fields.items() if isinstance(k, tuple) or k.startswith("list")]
    expanded = None
    if expandable and spec.get("primary_key") and draw(st.booleans()):
        expanded = draw(st.sampled_from(expandable))
        child_key = draw(st.sampled_from(["id", ["id", "a"], "value", "sku"]))
        spec["expand"] = {expanded: {"primary_key": child_key, "parent_key": "parent_id"}}
    spec["flatten"] = draw(flatten_modes(fields, expanded))

    names = column_names(fields)
    child_names = ["parent_id", "value"]
    if expanded and isinstance(fields[expanded], tuple):
        child_names += column_names(fields[expanded][1])  # type: ignore[index]
        names += [f"{expanded}.{n}" for n in child_names]
    spec["types"] = draw(st.dictionaries(st.sampled_from(names), st.sampled_from(TYPES)))
    spec["fields"] = {}
    if draw(st.booleans()):
        spec["fields"]["include"] = draw(st.lists(st.sampled_from(names), unique=True))
    renamed = draw(st.lists(st.sampled_from(names), unique=True, max_size=3))
    allowed = [n for n in names if not n.startswith("_rq_")] + ["new", "other"]
    targets = draw(st.lists(st.sampled_from(allowed), unique=True))
    spec["fields"]["rename"] = dict(zip(renamed, targets, strict=False))

    cursors = [n for n, k in fields.items() if k in ("int", "timestamp", "str", "numeric_str")]
    since = None
    if cursors and draw(st.booleans()):
        spec["cursor_field"] = cursor = draw(st.sampled_from(cursors))
        seen = [r[cursor] for r in records if r.get(cursor) is not None]
        saved = st.sampled_from(["5", "2024-01-01", "2024-01-01T00:00:00Z", "abc", "1.5"])
        if seen:
            saved |= st.sampled_from(seen).map(str)
        since = draw(st.none() | saved)

    known = None
    if draw(st.booleans()):
        known = {"s": draw(known_schemas([*names, "new", "other"]))}
        if expanded:
            known[f"s_{expanded}"] = draw(known_schemas(child_names))

    cuts = sorted(draw(st.lists(st.integers(0, len(records)), max_size=4)))
    bounds = [0, *cuts, len(records)]
    pages = [records[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    layout = draw(st.sampled_from(["data", "bare", "nested"]))
    if layout == "data":
        spec["data_path"] = "data"
        wrapped: list[Any] = [{"data": page, "total": len(page)} for page in pages]
    elif layout == "nested":
        spec["data_path"] = "result.items"
        wrapped = [{"ok": True, "result": {"items": page, "next": None}} for page in pages]
    else:
        wrapped = list(pages)
    if draw(st.booleans()):
        bodies = [json.dumps(body, indent=2).encode() for body in wrapped]
    else:
        bodies = [orjson.dumps(body) for body in wrapped]
    return Case(make(**spec), bodies, since, known)


def check(case: Case) -> str:
    """Compare the two paths; which one the bodies took ("arrow" or "python")."""
    stream = case.stream
    records, parsed = read_both(case.bodies, stream.data_path)
    if parsed is None:
        event("python path")
        return "python"
    event("arrow path")
    assert len(parsed) == len(records)
    try:
        slow = transform_records(stream, records, case.known, case.since)
    except Exception as error:  # refused (or a bug of both paths): the Arrow path too
        with pytest.raises(type(error)) as same:
            transform_records(stream, records, case.known, case.since, parsed=parsed)
        assert str(same.value) == str(error)
        return "arrow"
    fast = transform_records(stream, records, case.known, case.since, parsed=parsed)
    assert_same(fast, slow)
    return "arrow"


def test_arrow_path_gives_the_python_path_result() -> None:
    """The property, over random records and specs; most of them must take the Arrow path
    (else the property would hold for want of testing it)."""
    taken: Counter[str] = Counter()

    @SETTINGS
    @given(cases())
    def run(case: Case) -> None:
        taken[check(case)] += 1

    run()
    # ~75% do: a list starting with null ([null, 1]) sends its chunk to the Python path
    assert taken["arrow"] >= 0.6 * sum(taken.values()), taken


# --- the bench API's records ---------------------------------------------------------------


def load_bench(name: str) -> ModuleType:
    location = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert location is not None and location.loader is not None
    module = importlib.util.module_from_spec(location)
    location.loader.exec_module(module)
    return module


def test_bench_orders_take_the_arrow_path() -> None:
    make_record = load_bench("api").make_record
    stream = Stream.model_validate(load_bench("embedded").spec("http://x")["streams"][0])
    pages = [[make_record(i) for i in range(start, start + 100)] for start in (1, 101, 201)]
    fast, slow = both_paths(stream, data_bodies(pages))
    assert_same(fast, slow)
    orders, items = fast.tables
    assert orders.data.num_rows == 300
    assert orders.data.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert "customer_address_city" in orders.data.column_names  # prefix: objects below too
    assert orders.data.column("tags").to_pylist()[:2] == ['["web"]', '["store","promo"]']
    assert items.data.num_rows == sum(1 + i % 3 for i in range(1, 301))
    assert items.data.column_names[0] == "order_id"


def test_bench_orders_with_an_incremental_cursor() -> None:
    make_record = load_bench("api").make_record
    spec = load_bench("embedded").spec("http://x")["streams"][0]
    stream = Stream.model_validate({**spec, "cursor_field": "updated_at"})
    records = [make_record(i) for i in range(1, 51)]
    since = records[20]["updated_at"]
    fast, slow = both_paths(stream, data_bodies([records[:25], records[25:]]), since=since)
    assert_same(fast, slow)
    assert fast.records_dropped_by_cursor == 20
    assert fast.max_cursor == datetime.fromisoformat(records[-1]["updated_at"]).isoformat()


# --- bodies Arrow must refuse --------------------------------------------------------------

REFUSED = {
    "a field changes type": ([b'{"data":[{"x":1},{"x":"a"}]}'], [2], "data"),
    "type changes across pages": ([b'{"data":[{"x":1}]}', b'{"data":[{"x":"a"}]}'], [1, 1], "data"),
    "duplicate keys": ([b'{"data":[{"a":1,"a":2}]}'], [1], "data"),
    "20-digit integer": ([b'{"data":[{"n":12345678901234567890}]}'], [1], "data"),
    "19-digit integer": ([b'{"data":[{"n":1234567890123456789}]}'], [1], "data"),
    "lone surrogate": ([b'{"data":[{"s":"\\ud800"}]}'], [1], "data"),
    "data is an object": ([b'{"data":{"a":1}}'], [1], "data"),
    "counts do not match": ([b'{"data":[{"a":1},{"a":2}]}'], [3], "data"),
    "counts per page do not match": (
        [b'{"data":[{"a":1}]}', b'{"data":[{"a":2}]}'],
        [2, 0],
        "data",
    ),
    "records are not objects": ([b'{"data":[1,2]}'], [2], "data"),
    "a null record": ([b'{"data":[{"a":1},null]}'], [2], "data"),
    "a list index in the path": ([b'{"data":[{"a":[{"x":1}]}]}'], [1], "data.0.a"),
    "no records": ([b'{"data":[]}'], [0], "data"),
    "no pages": ([], [], "data"),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=list(REFUSED))
def test_read_pages_refuses_what_arrow_reads_differently(
    case: tuple[list[bytes], list[int], str | None],
) -> None:
    bodies, counts, data_path = case
    assert read_pages(PageBodies(bodies, counts, data_path)) is None


def test_read_pages_reads_bare_nested_and_pretty_bodies() -> None:
    records = [{"id": 1, "a": "x"}, {"a": "y", "id": 2}]
    layouts: list[tuple[list[bytes], str | None]] = [
        ([orjson.dumps(records)], None),
        ([orjson.dumps({"r": {"items": records}})], "r.items"),
        ([json.dumps({"data": records}, indent=2).encode()], "data"),
        ([json.dumps({"data": records}, indent="\t").replace("\n", "\r\n").encode()], "data"),
    ]
    for bodies, data_path in layouts:
        parsed = read_pages(PageBodies(bodies, [2], data_path))
        assert parsed is not None, data_path
        assert parsed.to_pylist() == [{"id": 1, "a": "x"}, {"id": 2, "a": "y"}]
    pages = data_bodies([records, [], [{"id": 3}]])
    parsed = read_pages(PageBodies(pages, [2, 0, 1], "data"))
    assert parsed is not None and parsed.to_pylist()[2] == {"id": 3, "a": None}


# --- values read differently by Arrow and the JSON parser ----------------------------------


def test_rejected_values_are_the_same() -> None:
    records = [
        {"id": 1, "s": "1", "f": 1},
        {"id": 2, "s": "x", "f": 2.5},
        {"id": 3, "s": "1.5", "f": 3.0},
        {"id": 4, "s": " 7 ", "f": None},
        {"id": 5, "s": None, "f": 1e30},
    ]
    stream = make(data_path="data", types={"s": "integer", "f": "integer"})
    fast, slow = both_paths(stream, data_bodies([records[:2], records[2:]]))
    assert_same(fast, slow)
    data = fast.tables[0].data
    assert data.column("s").to_pylist() == [1, None, None, 7, None]
    assert data.column("f").to_pylist() == [1, None, 3, None, None]
    assert [None if r is None else json.loads(r) for r in data.column(REJECTED).to_pylist()] == [
        None,
        {"s": "x", "f": 2.5},
        {"s": "1.5"},
        None,
        {"f": 1e30},
    ]
    assert any("could not be read as integer" in w for w in fast.warnings)


def test_strings_declared_as_other_types_are_the_same() -> None:
    records = [
        {"b": "yes", "t": "2024-01-02T03:04:05+02:00", "d": "2024-01-02 03:04:05", "n": "1e3"},
        {"b": "maybe", "t": "not a time", "d": "2024-13-01", "n": "x"},
        {"b": "0", "t": "1700000000", "d": "2024-01-02", "n": " 2.5 "},
    ]
    types = {"b": "boolean", "t": "timestamp", "d": "date", "n": "float"}
    fast, slow = both_paths(make(data_path="data", types=types), data_bodies([records]))
    assert_same(fast, slow)
    rejected = fast.tables[0].data.column(REJECTED).to_pylist()
    assert rejected[0] is None and rejected[2] is None
    assert json.loads(rejected[1]) == {"b": "maybe", "t": "not a time", "d": "2024-13-01", "n": "x"}


def test_float_column_declared_string_writes_integers_as_json_does() -> None:
    records = [{"v": 1}, {"v": 2.5}, {"v": None}, {"v": 1e20}, {"v": -0.0}]
    fast, slow = both_paths(make(data_path="data", types={"v": "string"}), data_bodies([records]))
    assert_same(fast, slow)
    assert fast.tables[0].data.column("v").to_pylist() == ["1", "2.5", None, "1e+20", "-0.0"]


def test_timestamp_looking_strings_stay_strings() -> None:
    """Arrow reads these as timestamps; undeclared, they are the strings as sent."""
    stamps = ["2024-01-02T03:04:05+02:00", "2024-01-02", "2024-01-02 03:04:05", None]
    records = [{"when": s, "n": i} for i, s in enumerate(stamps)]
    parsed = read_pages(PageBodies(data_bodies([records]), [4], "data"))
    assert parsed is not None and pa.types.is_timestamp(parsed.type.field("when").type)
    fast, slow = both_paths(make(data_path="data", cursor_field="when"), data_bodies([records]))
    assert_same(fast, slow)
    assert fast.tables[0].data.column("when").to_pylist() == stamps
    assert fast.max_cursor == "2024-01-02T03:04:05+02:00"


def test_objects_and_arrays_as_json_text_are_the_same() -> None:
    records = [
        {"o": {"b": 1, "a": [1, 2.5]}, "l": [{"x": 1}], "e": {}, "n": [], "u": "é\u2028"},
        {"o": None, "l": [], "e": {}, "n": [None], "u": "\\"},
        {"o": {"a": None, "c": {"d": "2024-01-02"}}, "e": None},
    ]
    stream = make(data_path="data", types={"u": "json"})
    fast, slow = both_paths(stream, data_bodies([records[:1], records[1:]]))
    assert_same(fast, slow)
    assert fast.tables[0].data.column("o").to_pylist()[0] == '{"b":1,"a":[1,2.5]}'


def test_expanded_items_and_keys_are_the_same() -> None:
    records = [
        {"id": 1, "items": [{"id": 10, "p": {"q": 1}}, {"id": 11}], "at": 3},
        {"id": 2, "items": [], "at": 1},
        {"id": 1, "items": [{"id": 12, "p": {"q": 2, "r": "s"}}], "at": 5},
        {"id": 4, "items": None, "at": 2},
        {"id": 3, "at": 4},
    ]
    stream = make(
        data_path="data",
        primary_key=["id"],
        cursor_field="at",
        flatten={"items.p": "prefix"},
        expand={"items": {"primary_key": "id", "parent_key": "order_id"}},
    )
    fast, slow = both_paths(stream, data_bodies([records[:2], records[2:]]), since="2")
    assert_same(fast, slow)
    parent, child = fast.tables
    assert parent.data.column("id").to_pylist() == [1, 4, 3]
    assert child.data.column_names[:3] == ["order_id", "id", "p_q"]
    assert child.parent_keys is not None and child.parent_keys.to_pylist() == [1, 4, 3]


def test_renames_are_reported_the_same_on_both_paths() -> None:
    records = [
        {"id": 1, "ID": "u", "": "e", "_rq_key": "k", "name": "n", "title": "t",
         "items": [{"id": 10, "order_id": 99, "Order_ID": 98}]},
        {"id": 2, "ID": "v", "": "f", "_rq_key": "l", "name": "m", "title": "s", "items": []},
    ]  # fmt: skip
    stream = make(
        data_path="data",
        primary_key=["id"],
        expand={"items": {"primary_key": "id", "parent_key": "order_id"}},
        fields={"rename": {"title": "name"}},
    )
    fast, slow = both_paths(stream, data_bodies([records]))
    assert_same(fast, slow)
    reserved = "names starting with _rq_ are reserved for rawquery's columns"
    assert fast.renames == [
        's: API field "ID" lands as column "ID_2" (it collides with column "id")',
        's: API field "" lands as column "_" (a column name cannot be empty)',
        f's: API field "_rq_key" lands as column "api_rq_key" ({reserved})',
        's: API field "name" lands as column "name_2" (it collides with column "name")',
        's_items: API field "order_id" lands as column "order_id_2" '
        '(it collides with column "order_id")',
        's_items: API field "Order_ID" lands as column "Order_ID_3" '  # _2 folds as order_id_2
        '(it collides with column "order_id")',
    ]


def test_a_null_key_is_refused_the_same_on_both_paths() -> None:
    stream = make(data_path="data", primary_key=["id"])
    records, parsed = read_both(data_bodies([[{"id": 1}, {"id": None}, {"x": 2}]]), "data")
    assert parsed is not None
    messages = []
    for arrow in (parsed, None):
        with pytest.raises(TransformError) as refused:
            transform_records(stream, records, parsed=arrow)
        messages.append(str(refused.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("stream s: 2 records have no value (missing or null)")


def test_timestamp_cursor_drops_earlier_records() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    records = [
        {"id": i, "at": (start + timedelta(hours=7 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        for i in range(10)
    ]
    stream = make(data_path="data", cursor_field="at", types={"at": "timestamp"})
    fast, slow = both_paths(stream, data_bodies([records]), since="2024-01-02")
    assert_same(fast, slow)
    assert fast.records_dropped_by_cursor == 4


# --- divergences found by the property (minimal repros) ------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"data":[{"l":[null,"x"]}]}',
        b'{"data":[{"l":[null,1]}]}',
        b'{"data":[{"l":[null,{"b":1}]}]}',
        b'{"data":[{"l":[[null,1]]}]}',
        b'{"data":[{"l":[null]},{"l":[null,"x"]}]}',
    ],
)
def test_null_before_the_first_typed_list_item(body: bytes) -> None:
    """pyarrow's JSON reader builds an invalid list array when a list holds null before the
    first value that gives the items a type ([null, 1] reads as [1, 0] with offsets past
    the end): read_pages must not raise, and must not return wrong values."""
    records, parsed = read_both([body], "data")
    if parsed is not None:
        parsed.validate(full=True)
        stream = make(data_path="data")
        assert_same(
            transform_records(stream, records, parsed=parsed), transform_records(stream, records)
        )


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "known"])
def test_big_integers_among_floats_in_an_integer_column(declared: bool) -> None:
    """Arrow reads the column as double (123456789012345679 -> 1.2345678901234568e17); the
    JSON parser keeps the integer exact, and so must the integer column (declared in the
    spec, or the type of the table's column)."""
    records = [{"v": 123456789012345679}, {"v": 2.0}]
    stream = make(data_path="data", types={"v": "integer"} if declared else {})
    known = None if declared else {"s": KnownSchema(pa.schema([pa.field("v", pa.int64())]))}
    fast, slow = both_paths(stream, data_bodies([records]), known=known)
    assert slow.tables[0].data.column("v").to_pylist() == [123456789012345679, 2]
    assert_same(fast, slow)


def test_column_type_of_kept_rows_after_dedupe() -> None:
    """The Python path infers the type from the rows kept (3 -> integer); the Arrow array
    keeps the type of all the rows read (2.5 and 3 -> double)."""
    records = [{"id": 1, "v": 2.5}, {"id": 1, "v": 3}]
    fast, slow = both_paths(make(data_path="data", primary_key=["id"]), data_bodies([records]))
    assert slow.tables[0].data.schema.field("v").type == pa.int64()
    assert_same(fast, slow)


def test_column_type_of_kept_rows_after_cursor() -> None:
    records = [{"c": 1, "v": 2.5}, {"c": 5, "v": 3}]
    stream = make(data_path="data", cursor_field="c")
    fast, slow = both_paths(stream, data_bodies([records]), since="2")
    assert slow.tables[0].data.schema.field("v").type == pa.int64()
    assert_same(fast, slow)


@pytest.mark.parametrize(
    ("dropped", "kept", "python_schema"),
    [
        ({"y": "a", "x": 1}, {"x": 2}, [("pid", pa.int64()), ("x", pa.int64())]),
        (
            {"x": 1, "q": 2.5},
            {"x": 2, "q": 3},
            [("pid", pa.int64()), ("x", pa.int64()), ("q", pa.int64())],
        ),
    ],
    ids=["a field only the dropped item has", "a type only the dropped item has"],
)
def test_child_columns_come_from_the_kept_parents_only(
    dropped: dict[str, Any], kept: dict[str, Any], python_schema: list[tuple[str, pa.DataType]]
) -> None:
    """The items of a parent dropped as a duplicate are not rows of the child table; the
    Arrow path still takes their fields (name, order) and their types."""
    records = [{"id": 1, "items": [dropped]}, {"id": 1, "items": [kept]}]
    expand = {"items": {"primary_key": "x", "parent_key": "pid"}}
    stream = make(data_path="data", primary_key=["id"], expand=expand)
    fast, slow = both_paths(stream, data_bodies([records]))
    child = slow.tables[1].data.schema
    assert [(f.name, f.type) for f in child][:-2] == python_schema
    assert_same(fast, slow)
