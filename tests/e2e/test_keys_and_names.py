"""End to end: a primary key never lands null, and every forced rename of a column is
reported in the stream's `schema_changes` (`rq connections status --json`), once a sync,
whichever transform path (Arrow or Python) read the pages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rawquery_workers.transform.columnar import PageBodies, read_pages
from tests.e2e.helpers import Cli, all_rows, rows, status_streams
from tests.support.api_server import ApiServer, RecordedRequest, Reply

BIG = 2**64  # 18446744073709551616: no long holds it
LONG_KEY_ERROR = (
    "stream orders: primary key column 'id' holds 18446744073709551616, which does not fit "
    'its long column; declare "types": {"id": "string"} in the stream and re-create the '
    "table, whose column keeps its type otherwise (rq connections delete CONNECTION "
    "--drop-tables, then rq connect and sync again)"
)


class Orders:
    """`/orders?offset=&limit=`: `records` in pages, as JSON the stdlib writes (any int)."""

    def __init__(self, server: ApiServer) -> None:
        self.records: list[dict[str, Any]] = []
        server.route("/orders", self.answer)

    def body(self, records: list[dict[str, Any]]) -> bytes:
        return json.dumps({"data": records}).encode()

    def answer(self, req: RecordedRequest) -> Reply:
        offset, limit = int(req.params.get("offset", 0)), int(req.params.get("limit", 100))
        body = self.body(self.records[offset : offset + limit])
        return Reply(body, headers={"Content-Type": "application/json"})


def orders_spec(url: str, page_size: int = 100, **stream: Any) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": url,
        "auth": {"type": "none"},
        "rate_limit": {"max_retries": 1, "backoff_base": 0.01},
        "streams": [
            {
                "name": "orders",
                "endpoint": "/orders",
                "data_path": "data",
                "primary_key": ["id"],
                "pagination": {"type": "offset", "limit_param": "limit", "page_size": page_size},
                **stream,
            }
        ],
    }


@pytest.fixture
def orders(api_server: ApiServer) -> Orders:
    return Orders(api_server)


@pytest.fixture
def connect(cli: Cli, write_spec: Callable[..., Path]) -> Callable[..., None]:
    def run(name: str, spec: dict[str, Any], command: str = "connect") -> None:
        path = str(write_spec(spec, f"{name}.json"))
        args = ("connect", name) if command == "connect" else ("connections", "update", name)
        result = cli(*args, "--spec", path)
        assert result.code == 0, result.out + result.err

    return run


def sync(cli: Cli, name: str, *args: str, ok: bool = True) -> dict[str, Any]:
    result = cli("connections", "sync", name, *args)
    assert result.code == (0 if ok else 1), result.out + result.err
    assert "Traceback" not in result.err
    return status_streams(cli, name)["orders"]


def keys_landed(table: str = "orders") -> list[Any]:
    return sorted(str(r["_rq_key"]) for r in all_rows("shop", table))


# --- a primary key is never null -------------------------------------------------------------


def test_a_key_beyond_64_bits_on_a_later_sync_fails_the_stream_and_lands_nothing(
    cli: Cli, orders: Orders, api_server: ApiServer, connect: Callable[..., None]
) -> None:
    orders.records = [{"id": 1, "n": "a"}, {"id": 2, "n": "b"}]
    connect("shop", orders_spec(api_server.url))
    assert sync(cli, "shop")["status"] == "succeeded"
    first = rows("shop", "orders")
    assert first == [{"id": 1, "n": "a"}, {"id": 2, "n": "b"}]

    orders.records = [{"id": 1, "n": "changed"}, {"id": BIG, "n": "big"}]
    status = sync(cli, "shop", ok=False)
    assert status["status"] == "failed"
    assert status["error"] == LONG_KEY_ERROR
    assert rows("shop", "orders") == first  # the earlier rows, untouched
    assert keys_landed() == ["1", "2"]  # no null key, no row of the failed sync

    # Declaring the type alone cannot change the table's long column: the same advice.
    connect("shop", orders_spec(api_server.url, types={"id": "string"}), command="update")
    assert sync(cli, "shop", ok=False)["error"] == LONG_KEY_ERROR

    # The advice, followed: the table is re-created with a string key, exact.
    assert cli("connections", "delete", "shop", "--drop-tables").code == 0
    connect("shop", orders_spec(api_server.url, types={"id": "string"}))
    assert sync(cli, "shop")["status"] == "succeeded"
    assert rows("shop", "orders") == [
        {"id": "1", "n": "changed"},
        {"id": str(BIG), "n": "big"},
    ]
    # Later syncs match keys beyond 64 bits exactly: BIG is replaced, BIG + 1 is new.
    orders.records = [{"id": BIG, "n": "big again"}, {"id": BIG + 1, "n": "bigger"}]
    assert sync(cli, "shop")["rows"] == 2
    got = {r["id"]: r["n"] for r in rows("shop", "orders")}
    assert got == {"1": "changed", str(BIG): "big again", str(BIG + 1): "bigger"}
    assert keys_landed() == sorted(["1", str(BIG), str(BIG + 1)])


def test_a_key_beyond_64_bits_later_in_the_same_sync_fails_the_stream(
    cli: Cli,
    orders: Orders,
    api_server: ApiServer,
    connect: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "2")  # one page of 2 per segment
    orders.records = [{"id": 1}, {"id": 2}, {"id": 3}, {"id": BIG}]
    connect("shop", orders_spec(api_server.url, page_size=2))
    status = sync(cli, "shop", ok=False)
    assert status["status"] == "failed"
    assert status["error"] == LONG_KEY_ERROR
    assert keys_landed() == ["1", "2"]  # the first segment's commit; never a null key


def test_records_without_a_key_value_fail_the_stream_and_land_nothing(
    cli: Cli, orders: Orders, api_server: ApiServer, connect: Callable[..., None]
) -> None:
    orders.records = [{"id": 1, "n": "a"}, {"id": 2, "n": "b"}]
    connect("shop", orders_spec(api_server.url))
    sync(cli, "shop")
    orders.records = [{"id": 1, "n": "changed"}, {"id": None, "n": "null"}, {"n": "missing"}]
    status = sync(cli, "shop", ok=False)
    assert status["status"] == "failed"
    assert status["error"] == (
        "stream orders: 2 records have no value (missing or null) for primary key column "
        "'id', which every row of a keyed table needs; check that primary_key names a field "
        "every record has (names are the API's, after flatten)"
    )
    assert rows("shop", "orders") == [{"id": 1, "n": "a"}, {"id": 2, "n": "b"}]
    assert keys_landed() == ["1", "2"]


# --- renames are reported ---------------------------------------------------------------------

RENAMES = [
    'orders: API field "ID" lands as column "ID_2" (it collides with column "id")',
    'orders: API field "" lands as column "_" (a column name cannot be empty)',
    'orders: API field "_rq_key" lands as column "api_rq_key" (names starting with _rq_ are '
    "reserved for rawquery's columns)",
    'orders: API field "name" lands as column "name_2" (it collides with column "name")',
    'orders_line_items: API field "order_id" lands as column "order_id_2" (it collides with '
    'column "order_id")',
]


def odd_record(i: int, python_path: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": i,
        "ID": f"upper {i}",
        "": f"empty {i}",
        "_rq_key": f"mine {i}",
        "title": f"title {i}",
        "name": f"name {i}",
        "line_items": [{"id": 10 * i, "order_id": 99}],
    }
    if python_path:
        record["n"] = 1234567890123456789  # 19 digits: Arrow would read it inexactly
    return record


@pytest.mark.parametrize("python_path", [False, True], ids=["arrow path", "python path"])
def test_each_rename_is_reported_once_a_sync_in_schema_changes(
    cli: Cli,
    orders: Orders,
    api_server: ApiServer,
    connect: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    python_path: bool,
) -> None:
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "1")  # every record its own segment
    orders.records = [odd_record(i, python_path) for i in (1, 2, 3)]
    page = orders.body(orders.records[:1])
    assert (read_pages(PageBodies([page], [1], "data")) is None) == python_path
    spec = orders_spec(
        api_server.url,
        page_size=1,
        expand={"line_items": {"primary_key": "id", "parent_key": "order_id"}},
        fields={"rename": {"title": "name"}},
    )
    connect("shop", spec)
    for _ in range(2):  # reported by every sync that renames, once
        status = sync(cli, "shop")
        assert status["status"] == "succeeded"
        assert [c for c in status["schema_changes"] if "API field" in c] == RENAMES
        assert not any("lands as column" in w for w in status["warnings"]), status["warnings"]

    (row, *_) = rows("shop", "orders")
    assert {k: row[k] for k in ("id", "ID_2", "_", "api_rq_key", "name", "name_2")} == {
        "id": 1,
        "ID_2": "upper 1",
        "_": "empty 1",
        "api_rq_key": "mine 1",
        "name": "title 1",
        "name_2": "name 1",
    }
    (item, *_) = rows("shop", "orders_line_items")
    assert {k: item[k] for k in ("order_id", "id", "order_id_2")} == {
        "order_id": 1,
        "id": 10,
        "order_id_2": 99,
    }
    # `id` and `ID` were one column to SQL: now each is reachable.
    query = cli("query", "SELECT id, ID_2 FROM shop.orders ORDER BY id", "--format", "json")
    assert query.code == 0, query.err
    assert json.loads(query.out)[0] == {"id": 1, "ID_2": "upper 1"}
