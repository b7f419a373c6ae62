"""Item 6: hostile API data. Each case either lands correctly (the documented handling in
docs/reliability.md) or fails its own stream with a clear error, committing nothing, while
the connection's other stream commits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.reliability.support import assert_exact, committed_state, rq, table_rows, write_json
from tests.reliability.tally import TALLY
from tests.support.api_server import ApiServer, Reply

pytestmark = pytest.mark.reliability
GOOD = [{"id": i, "name": f"n{i}"} for i in range(1, 6)]


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


# name -> (reply, stream overrides, expected error words or None when handled)
FAILING: dict[str, tuple[Reply, dict[str, Any], list[str]]] = {
    "malformed_json": (Reply(b'{"data": [{"id": 1}, {"id": '), {}, ["not valid JSON"]),
    "html_200": (
        Reply(b"<html><body>Sign in</body></html>", headers={"Content-Type": "text/html"}),
        {},
        ["not valid JSON", "text/html"],
    ),
    "wrong_data_path": (Reply({"results": [{"id": 1}]}), {}, ["data_path 'data'", "results"]),
    "non_list": (Reply({"data": {"id": 1}}), {}, ["not an array of records"]),
    "list_of_scalars": (Reply({"data": [1, 2, 3]}), {}, ["not a JSON object"]),
    "invalid_utf8": (Reply(b'{"data": [{"id": 1, "name": "\xff\xfe"}]}'), {}, ["not valid JSON"]),
    "lone_surrogate": (Reply(b'{"data": [{"id": 1, "name": "\\ud800"}]}'), {}, ["not valid JSON"]),
}


def _connect(api_server: ApiServer, home: Path, name: str, bad: dict[str, Any]) -> None:
    spec = {
        "version": "1",
        "base_url": api_server.url,
        "auth": {"type": "none"},
        "rate_limit": {"max_retries": 1, "backoff_base": 0.01, "max_wait": 0.02},
        "streams": [
            {"name": "good", "endpoint": "/good", "data_path": "data", "primary_key": ["id"]},
            {"name": "bad", "endpoint": "/bad", "data_path": "data", **bad},
        ],
    }
    write_json(home.parent / f"{name}.json", spec)
    result = rq("connect", name, "--spec", f"{name}.json")
    assert result.code == 0, result.text


def _status(name: str) -> dict[str, dict[str, Any]]:
    result = rq("connections", "status", name, "--json")
    return {s["name"]: s for s in orjson.loads(result.out)["streams"]}


@pytest.mark.parametrize("case", sorted(FAILING))
def test_hostile_body_fails_its_stream_only(
    case: str, rq_home: Path, api_server: ApiServer
) -> None:
    reply, overrides, words = FAILING[case]
    api_server.route("/good", lambda _: Reply({"data": GOOD}))
    api_server.route("/bad", lambda _: reply)
    _connect(api_server, rq_home, case, overrides)
    TALLY.bad_inputs_tried += 1
    result = rq("connections", "sync", case)
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    status = _status(case)
    assert status["good"]["status"] == "succeeded"
    assert status["bad"]["status"] == "failed"
    error = status["bad"]["error"]
    assert "stream bad" in error or "/bad" in error, error
    for word in words:
        assert word in error, error
    assert "internal error" not in error
    assert_exact(case, "good", GOOD)
    assert table_rows(case, "bad") == []
    assert committed_state(case, "bad") == {}


def _sync_ok(name: str) -> None:
    result = rq("connections", "sync", name)
    assert result.code == 0, result.text
    assert "Traceback" not in result.text


def test_big_integers_keep_every_digit(rq_home: Path, api_server: ApiServer) -> None:
    big = 2**70 + 1
    body = b'{"data": [{"id": 1, "big": %d, "small": 5}, {"id": 2, "big": 7, "small": %d}]}' % (
        big,
        -(2**64),
    )
    api_server.route("/good", lambda _: Reply({"data": GOOD}))
    api_server.route("/bad", lambda _: Reply(body))
    _connect(api_server, rq_home, "bigint", {"primary_key": ["id"]})
    TALLY.bad_inputs_tried += 1
    _sync_ok("bigint")
    rows = {r["id"]: r for r in table_rows("bigint", "bad")}
    # No precision is lost: a column with a value beyond 64 bits is kept as text.
    assert str(rows[1]["big"]) == str(big)
    assert str(rows[2]["small"]) == str(-(2**64))
    assert str(rows[1]["small"]) == "5"


def test_duplicate_keys_last_wins(rq_home: Path, api_server: ApiServer) -> None:
    body = b'{"data": [{"id": 1, "name": "first", "name": "last"}]}'
    api_server.route("/good", lambda _: Reply({"data": GOOD}))
    api_server.route("/bad", lambda _: Reply(body))
    _connect(api_server, rq_home, "dupkeys", {"primary_key": ["id"]})
    TALLY.bad_inputs_tried += 1
    _sync_ok("dupkeys")
    assert table_rows("dupkeys", "bad") == [{"id": 1, "name": "last"}]


def test_deep_nesting_is_stored_as_json(rq_home: Path, api_server: ApiServer) -> None:
    deep = _deep(500)
    api_server.route("/good", lambda _: Reply({"data": GOOD}))
    api_server.route("/bad", lambda _: Reply(b'{"data": [{"id": 1, "tree": %s}]}' % _dumps(deep)))
    _connect(api_server, rq_home, "deep", {"primary_key": ["id"]})
    TALLY.bad_inputs_tried += 1
    _sync_ok("deep")
    (row,) = table_rows("deep", "bad")
    tree = row["tree"]
    depth = 0
    value: Any = __import__("json").loads(tree)
    while isinstance(value, dict) and "n" in value:
        value, depth = value["n"], depth + 1
    assert depth == 499 and value == {"leaf": 1}


def _dumps(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


def test_colliding_and_odd_names(rq_home: Path, api_server: ApiServer) -> None:
    record = {
        "id": 1,
        "a": {"b": 1},
        "a_b": 2,
        "with space": "s",
        "dot.ted": "d",
        "ünïcødé ✓": "u",
    }
    api_server.route("/good", lambda _: Reply({"data": GOOD}))
    api_server.route("/bad", lambda _: Reply({"data": [record]}))
    _connect(api_server, rq_home, "names", {"primary_key": ["id"], "flatten": {"a": "prefix"}})
    TALLY.bad_inputs_tried += 1
    result = rq("connections", "sync", "names")
    assert "Traceback" not in result.text
    status = _status("names")
    assert status["good"]["status"] == "succeeded"
    assert_exact("names", "good", GOOD)
    # Handled: the later colliding name gets a suffix, and the sync reports the rename.
    assert status["bad"]["status"] == "succeeded", status["bad"]
    assert any("a_b_2" in c for c in status["bad"]["schema_changes"]), status["bad"]
    (row,) = table_rows("names", "bad")
    assert row["a_b"] == 2 and row["a_b_2"] == 1
    assert row["with space"] == "s" and row["dot.ted"] == "d" and row["ünïcødé ✓"] == "u"
    query = rq(
        "query", 'SELECT "with space", "dot.ted", "ünïcødé ✓" FROM names.bad', "--format", "json"
    )
    assert query.code == 0, query.text


def test_fifty_megabyte_record(rq_home: Path, api_server: ApiServer) -> None:
    blob = "x" * (50 * 1024 * 1024)
    body = b'{"data": [{"id": 1, "blob": "%s"}]}' % blob.encode()
    api_server.route("/good", lambda _: Reply({"data": GOOD}))
    api_server.route("/bad", lambda _: Reply(body))
    _connect(api_server, rq_home, "huge", {"primary_key": ["id"]})
    TALLY.bad_inputs_tried += 1
    _sync_ok("huge")
    (row,) = table_rows("huge", "bad")
    assert len(row["blob"]) == len(blob)
