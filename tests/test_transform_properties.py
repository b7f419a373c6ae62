"""Properties of transform_records over random nested JSON records (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawquery_workers.spec.models import Stream
from rawquery_workers.transform import transform_records
from rawquery_workers.transform.coerce import ARROW_TYPES

KEYS = st.sampled_from(["id", "a", "b", "a_b", "x y", "é", "k.1", "", "_rq_key", "value"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)
RECORDS = st.lists(st.dictionaries(KEYS, JSON, max_size=5), max_size=8)
MODES = st.dictionaries(
    st.sampled_from(["a", "b", "a_b", "é", "a.b", "b.a"]),
    st.sampled_from(["prefix", "lift", "json"]),
    max_size=3,
)
TYPES = st.sampled_from(["string", "integer", "float", "boolean", "timestamp", "date", "json"])
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make(**fields: Any) -> Stream:
    return Stream.model_validate({"name": "s", "endpoint": "/s", **fields})


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [] if value is None else [value]


def norm(value: Any) -> tuple[str, Any]:
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(value))
    return ("s", value)


def findable(row: dict[str, Any]) -> set[tuple[str, Any]]:
    """Every value of an output row, and every leaf of the JSON strings in it."""
    found = set()
    for value in row.values():
        if value is None:
            continue
        found.add(norm(value))
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                continue
            found.update(norm(leaf) for leaf in leaves(parsed))
    return found


@SETTINGS
@given(RECORDS, MODES)
def test_nothing_is_lost(records: list[dict[str, Any]], modes: dict[str, str]) -> None:
    result = transform_records(make(flatten=modes), records)
    rows = result.tables[0].data.to_pylist()
    assert len(rows) == len(records)
    for record, row in zip(records, rows, strict=True):
        found = findable(row)
        for leaf in leaves(record):
            assert norm(leaf) in found, (leaf, record, row)


@SETTINGS
@given(RECORDS, MODES)
def test_names_do_not_depend_on_record_or_key_order(
    records: list[dict[str, Any]], modes: dict[str, str]
) -> None:
    spec = make(flatten=modes)
    forward = transform_records(spec, records).tables[0].data
    shuffled = [dict(reversed(list(r.items()))) for r in reversed(records)]
    backward = transform_records(spec, shuffled).tables[0].data
    assert sorted(forward.column_names) == sorted(backward.column_names)
    assert forward.column_names[-1] == "_rq_rejected"
    assert all(field.nullable for field in forward.schema)


@SETTINGS
@given(RECORDS, st.data())
def test_same_shape_gives_same_names(records: list[dict[str, Any]], data: st.DataObject) -> None:
    """A second batch with the same fields (other values) lands in the same columns."""
    other = [{k: data.draw(SCALARS) for k in r} for r in records]
    first = [{k: data.draw(SCALARS) for k in r} for r in records]
    names = [
        transform_records(make(), batch).tables[0].data.column_names for batch in (first, other)
    ]
    assert names[0] == names[1]


@SETTINGS
@given(
    st.lists(st.dictionaries(st.sampled_from(["p", "q", "r"]), JSON, max_size=3), max_size=8),
    st.dictionaries(st.sampled_from(["p", "q", "r"]), TYPES, min_size=1),
)
def test_declared_types_are_honoured(records: list[dict[str, Any]], types: dict[str, str]) -> None:
    result = transform_records(make(types=types), records)
    data = result.tables[0].data
    rejected = [json.loads(r) if r else {} for r in data.column("_rq_rejected").to_pylist()]
    for name, column_type in types.items():
        if name not in data.column_names:
            continue
        assert data.schema.field(name).type == ARROW_TYPES[column_type]
        for record, value, lost in zip(
            records, data.column(name).to_pylist(), rejected, strict=True
        ):
            if record.get(name) is not None:
                assert (value is not None) != (name in lost), (record, value, lost)


@SETTINGS
@given(st.lists(st.one_of(st.none(), st.lists(JSON, max_size=4), st.just("missing")), max_size=8))
def test_child_rows_match_array_lengths(arrays: list[Any]) -> None:
    def items(a: list[Any] | None) -> list[Any] | None:  # every item has its key (keys.py)
        return None if a is None else [{"id": j, "v": item} for j, item in enumerate(a)]

    records = [
        {"id": i} if a == "missing" else {"id": i, "items": items(a)} for i, a in enumerate(arrays)
    ]
    expand = {"items": {"primary_key": "id", "parent_key": "parent_id"}}
    parent, child = transform_records(make(primary_key=["id"], expand=expand), records).tables
    assert "items" not in parent.data.column_names
    owners = child.data.column("parent_id").to_pylist()
    for i, a in enumerate(arrays):
        assert owners.count(i) == (len(a) if isinstance(a, list) else 0)
    assert child.parent_keys is not None
    assert child.parent_keys.to_pylist() == list(range(len(arrays)))
    if arrays:
        assert child.parent_keys.type == pa.int64() == child.data.schema.field("parent_id").type


@SETTINGS
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.one_of(st.none(), st.integers(0, 9)), st.text(max_size=3)),
        max_size=12,
    ),
    st.one_of(st.none(), st.integers(0, 9)),
)
def test_rows_are_records_minus_cursor_drops_and_duplicates(
    triples: list[tuple[int, int | None, str]], since: int | None
) -> None:
    records = [{"id": k, "c": c, "payload": p} for k, c, p in triples]
    spec = make(primary_key=["id"], cursor_field="c", types={"c": "integer"})
    result = transform_records(spec, records, since_cursor=None if since is None else str(since))
    kept = [r for r in records if since is None or r["c"] is None or r["c"] >= since]
    assert result.records_dropped_by_cursor == len(records) - len(kept)
    newest: dict[int, tuple[tuple[bool, int], int]] = {}
    for position, r in enumerate(kept):
        rank = (r["c"] is not None, r["c"] or 0)
        if r["id"] not in newest or rank >= newest[r["id"]][0]:
            newest[r["id"]] = (rank, position)
    expected = [kept[p]["payload"] for _, p in sorted(newest.values(), key=lambda v: v[1])]
    data = result.tables[0].data
    assert data.num_rows == len(expected)
    if expected:
        assert data.column("payload").to_pylist() == expected
    cursors = [r["c"] for r in kept if r["c"] is not None]
    assert result.max_cursor == (str(max(cursors)) if cursors else None)
