"""Issue 4, end to end: sequences of syncs against an API whose data changes between them,
compared after each step with the API's ground truth, exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from rawquery_workers.query import run_query
from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.sink import IcebergSink, open_sink
from tests.e2e.helpers import Cli, all_rows, rows, run_rq, status_streams
from tests.support.api_server import ApiServer, RecordedRequest, Reply

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def ts(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


class Shop:
    """An orders API: offset pages, `updated_since` filtering (unless `filters` is False),
    and per-request fault injection through `fail`."""

    def __init__(self, server: ApiServer, page_size: int = 3) -> None:
        self.orders: dict[int, dict[str, Any]] = {}
        self.filters = True
        self.page_size = page_size
        self.fail: Callable[[RecordedRequest, int], Reply | None] = lambda req, page: None
        self.extra: list[dict[str, Any]] = []  # records served after the stored ones
        server.route("/orders", self.answer)

    def put(self, oid: int, minutes: int, items: int = 2, **fields: Any) -> None:
        self.orders[oid] = {
            "id": oid,
            "status": fields.pop("status", "paid"),
            "updated_at": ts(minutes),
            "line_items": [{"id": oid * 100 + n, "qty": n + 1} for n in range(items)],
            **fields,
        }

    def listing(self, since: str | None) -> list[dict[str, Any]]:
        records = sorted(self.orders.values(), key=lambda o: (o["updated_at"], o["id"]))
        if since and self.filters:
            cut = datetime.fromisoformat(since.replace("Z", "+00:00"))
            records = [
                o
                for o in records
                if datetime.fromisoformat(o["updated_at"].replace("Z", "+00:00")) >= cut
            ]
        return records + self.extra

    def answer(self, req: RecordedRequest) -> Reply:
        offset = int(req.params.get("offset", 0))
        page = offset // self.page_size + 1
        fault = self.fail(req, page)
        if fault is not None:
            return fault
        data = self.listing(req.params.get("updated_since"))
        return Reply({"data": data[offset : offset + self.page_size]})

    def expected_orders(self) -> list[dict[str, Any]]:
        return [
            {"id": o["id"], "status": o["status"], "updated_at": _dt(o["updated_at"])}
            for o in sorted(self.orders.values(), key=lambda o: o["id"])
        ]

    def expected_items(self) -> list[dict[str, Any]]:
        return sorted(
            (
                {"order_id": o["id"], "id": i["id"], "qty": i["qty"]}
                for o in self.orders.values()
                for i in o["line_items"]
            ),
            key=lambda r: r["id"],
        )


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def shop_spec(url: str, **stream: Any) -> dict[str, Any]:
    orders = {
        "name": "orders",
        "endpoint": "/orders",
        "data_path": "data",
        "primary_key": ["id"],
        "cursor_field": "updated_at",
        "params": {"updated_since": "{{cursor}}"},
        "pagination": {"type": "offset", "limit_param": "limit", "page_size": 3},
        "expand": {"line_items": {"primary_key": "id", "parent_key": "order_id"}},
        "types": {"updated_at": "timestamp"},
        **stream,
    }
    return {
        "version": "1",
        "base_url": url,
        "auth": {"type": "none"},
        "rate_limit": {"max_retries": 1, "backoff_base": 0.01},
        "streams": [orders],
    }


@pytest.fixture
def server() -> Iterator[ApiServer]:
    with ApiServer() as api:
        yield api


@pytest.fixture
def shop(server: ApiServer) -> Shop:
    return Shop(server)


@pytest.fixture
def connect(cli: Cli, write_spec: Callable[..., Path]) -> Callable[..., None]:
    def run(name: str, spec: dict[str, Any]) -> None:
        result = cli("connect", name, "--spec", str(write_spec(spec, f"{name}.json")))
        assert result.code == 0, result.err

    return run


def sync(cli: Cli, name: str, *args: str, ok: bool = True) -> dict[str, dict[str, Any]]:
    result = cli("connections", "sync", name, *args)
    assert result.code == (0 if ok else 1), result.out + result.err
    assert "Traceback" not in result.err
    return status_streams(cli, name)


def _user_rows(table: str, conn: str = "shop") -> list[dict[str, Any]]:
    return rows(conn, table)


def assert_exact(shop: Shop, conn: str = "shop") -> None:
    orders = [{k: r[k] for k in ("id", "status", "updated_at")} for r in _user_rows("orders", conn)]
    assert orders == shop.expected_orders()
    items = [
        {k: r[k] for k in ("order_id", "id", "qty")} for r in _user_rows("orders_line_items", conn)
    ]
    assert items == shop.expected_items()


def _state(conn: str, table: str) -> dict[str, str]:
    reset_settings()
    return open_sink(get_settings()).committed_state(conn, table)


# --- first sync, incremental, primary keys, children -------------------------------------


def test_first_sync_then_incremental_with_updated_and_new_records(
    cli: Cli, shop: Shop, server: ApiServer, connect: Callable[..., None]
) -> None:
    for oid in range(1, 8):
        shop.put(oid, minutes=oid, items=3)
    connect("shop", shop_spec(server.url))
    status = sync(cli, "shop")["orders"]
    assert status["rows"] == 7
    assert status["cursor"] is not None and _dt(status["cursor"]) == _dt(ts(7))
    assert "updated_since" not in server.requests_to("/orders")[0].params  # first sync
    assert_exact(shop)

    # Updated (2 and 5, and 3 losing two line items) and new (8, 9) records.
    server.requests.clear()
    shop.put(2, minutes=20, status="refunded", items=3)
    shop.put(5, minutes=21, status="shipped", items=3)
    shop.put(3, minutes=22, items=1)
    shop.put(8, minutes=23)
    shop.put(9, minutes=24, items=0)
    status = sync(cli, "shop")["orders"]
    since = server.requests_to("/orders")[0].params["updated_since"]
    assert _dt(since) == _dt(ts(7))
    assert status["rows"] == 6  # 7 (the boundary record, cursor == saved) + 5 changed
    assert _dt(status["cursor"]) == _dt(ts(24))
    assert_exact(shop)

    # Nothing new: the saved cursor stays, no row changes.
    before = _user_rows("orders")
    status = sync(cli, "shop")["orders"]
    assert _dt(status["cursor"]) == _dt(ts(24))
    assert _user_rows("orders") == before
    assert_exact(shop)


def test_records_older_than_the_cursor_are_dropped_when_the_api_does_not_filter(
    cli: Cli, shop: Shop, server: ApiServer, connect: Callable[..., None]
) -> None:
    for oid in range(1, 6):
        shop.put(oid, minutes=oid)
    connect("shop", shop_spec(server.url))
    sync(cli, "shop")
    shop.filters = False
    # The API changes order 1 without moving its cursor (a stale record): it must not land.
    stale = shop.orders[1]
    shop.orders[1] = {**stale, "status": "stale-change"}
    shop.put(6, minutes=30)
    status = sync(cli, "shop")["orders"]
    assert status["rows"] == 2  # order 5 (at the cursor) and order 6
    got = {r["id"]: r["status"] for r in _user_rows("orders")}
    assert got[1] == "paid" and got[6] == "paid" and len(got) == 6
    shop.orders[1] = stale
    assert_exact(shop)


def test_primary_key_newest_version_wins_within_one_sync_and_across_syncs(
    cli: Cli, shop: Shop, server: ApiServer, connect: Callable[..., None]
) -> None:
    for oid in range(1, 6):
        shop.put(oid, minutes=oid)
    # Order 2 is updated while the sync pages: the API serves it again, newer, at the end.
    shop.extra = [
        {
            **shop.orders[2],
            "status": "updated-late",
            "updated_at": ts(40),
            "line_items": [{"id": 299, "qty": 9}],
        }
    ]
    connect("shop", shop_spec(server.url))
    sync(cli, "shop")
    shop.orders[2] = shop.extra.pop()
    assert_exact(shop)
    for step in range(3):
        shop.put(1 + step, minutes=50 + step, status=f"step-{step}", items=step)
        sync(cli, "shop")
        assert_exact(shop)
    ids = [r["id"] for r in _user_rows("orders")]
    assert len(ids) == len(set(ids)) == 5


# --- schema drift --------------------------------------------------------------------------


def test_schema_drift_new_removed_and_conflicting_fields(
    cli: Cli, server: ApiServer, connect: Callable[..., None]
) -> None:
    data: list[dict[str, Any]] = [
        {"id": 1, "name": "a", "score": 10},
        {"id": 2, "name": "b", "score": 20},
    ]
    server.route("/people", lambda req: Reply(data))
    spec = {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "none"},
        "streams": [{"name": "people", "endpoint": "/people", "primary_key": ["id"]}],
    }
    connect("drift", spec)
    sync(cli, "drift")
    assert rows("drift", "people") == data

    data[:] = [
        {"id": 3, "email": "c@x.io", "score": 30},  # new field, "name" removed
        {"id": 4, "email": "d@x.io", "score": "n/a"},  # type conflict
    ]
    status = sync(cli, "drift")["people"]
    assert any("email" in change for change in status["schema_changes"]), status
    assert any("score" in w and "1" in w for w in status["warnings"]), status
    got = rows("drift", "people")
    assert got == [
        {"id": 1, "name": "a", "score": 10, "email": None},
        {"id": 2, "name": "b", "score": 20, "email": None},
        {"id": 3, "name": None, "score": 30, "email": "c@x.io"},
        {"id": 4, "name": None, "score": None, "email": "d@x.io"},
    ]
    rejected = {r["id"]: r["_rq_rejected"] for r in all_rows("drift", "people")}
    assert rejected[1] is None and rejected[3] is None
    assert orjson.loads(rejected[4]) == {"score": "n/a"}
    result = cli(
        "query", "SELECT id, _rq_rejected FROM drift.people WHERE score IS NULL", "--format", "json"
    )
    assert result.code == 0 and [r["id"] for r in result.json()] == [4]


# --- full refresh ---------------------------------------------------------------------------


def _versions(sink: IcebergSink) -> tuple[int, tuple[str, ...]]:
    table = run_query("SELECT id, version FROM fr.items", sink)
    values = table.column("version").to_pylist()
    return table.num_rows, tuple(sorted(set(values)))


def test_full_refresh_is_atomic_for_a_concurrent_reader(
    cli: Cli, server: ApiServer, connect: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "4")
    version = {"name": "v1", "count": 30}
    mid_refresh = threading.Event()
    reader_saw_mid = threading.Event()
    done = threading.Event()

    def items(req: RecordedRequest) -> Reply:
        offset = int(req.params.get("offset", 0))
        if version["name"] == "v2" and offset == 12:  # three segments are staged already
            mid_refresh.set()
            assert reader_saw_mid.wait(30), "the reader never read during the refresh"
        chunk = [
            {"id": i, "version": version["name"], "n": i * 2}
            for i in range(offset, min(offset + 4, version["count"]))
        ]
        return Reply({"data": chunk})

    server.route("/items", items)
    spec = {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "none"},
        "streams": [
            {
                "name": "items",
                "endpoint": "/items",
                "data_path": "data",
                "primary_key": ["id"],
                "pagination": {"type": "offset", "page_size": 4},
            }
        ],
    }
    connect("fr", spec)
    sync(cli, "fr")
    reset_settings()
    sink = open_sink(get_settings())
    assert _versions(sink) == (30, ("v1",))

    seen: list[tuple[int, tuple[str, ...]]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not done.is_set():
                was_mid = mid_refresh.is_set()
                seen.append(_versions(sink))
                if was_mid:
                    reader_saw_mid.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            reader_saw_mid.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    version.update(name="v2", count=22)
    status = sync(cli, "fr", "--full-refresh")["items"]
    done.set()
    thread.join(30)
    assert not errors, errors
    assert status["rows"] == 22
    assert reader_saw_mid.is_set()
    assert set(seen) <= {(30, ("v1",)), (22, ("v2",))}, set(seen)
    assert (30, ("v1",)) in seen
    assert _versions(sink) == (22, ("v2",))
    assert [r["id"] for r in rows("fr", "items")] == list(range(22))


def test_full_refresh_replaces_parent_and_children(
    cli: Cli, shop: Shop, server: ApiServer, connect: Callable[..., None]
) -> None:
    for oid in range(1, 8):
        shop.put(oid, minutes=oid, items=3)
    connect("shop", shop_spec(server.url))
    sync(cli, "shop")
    # Orders deleted at the source, others shrunk: only a full refresh can see that.
    for oid in (2, 4, 6):
        del shop.orders[oid]
    shop.put(1, minutes=1, items=1)
    status = sync(cli, "shop", "--full-refresh")["orders"]
    assert status["rows"] == 4
    assert_exact(shop)
    # The cursor survives a full refresh; the next incremental sync continues from it.
    shop.put(10, minutes=60)
    assert sync(cli, "shop")["orders"]["rows"] == 2  # 7 (at the saved cursor) and 10
    assert_exact(shop)


# --- failures and reruns -------------------------------------------------------------------


def test_api_failure_mid_stream_then_rerun_ends_exact(
    cli: Cli,
    shop: Shop,
    server: ApiServer,
    connect: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "3")  # one page per segment
    for oid in range(1, 5):
        shop.put(oid, minutes=oid)
    connect("shop", shop_spec(server.url))
    first_cursor = sync(cli, "shop")["orders"]["cursor"]
    for oid in range(5, 16):
        shop.put(oid, minutes=10 + oid, items=1)
    shop.put(1, minutes=40, status="late-update")
    shop.fail = lambda req, page: Reply({"error": "boom"}, 400) if page == 3 else None
    status = sync(cli, "shop", ok=False)["orders"]
    assert status["status"] == "failed"
    assert "page 3" in status["error"] and "/orders" in status["error"]
    # Earlier segments committed, but the saved cursor did not move past the data.
    state = _state("shop", "orders")
    assert state["rq.complete"] == "false"
    assert _dt(state["rq.cursor"]) == _dt(first_cursor)
    assert len(_user_rows("orders")) > 4

    shop.fail = lambda req, page: None
    status = sync(cli, "shop")["orders"]
    assert status["status"] == "succeeded"
    assert _dt(status["cursor"]) == _dt(ts(40))
    assert _state("shop", "orders")["rq.complete"] == "true"
    assert_exact(shop)


def test_crash_between_file_write_and_commit_then_rerun_ends_exact(
    cli: Cli,
    shop: Shop,
    server: ApiServer,
    connect: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "3")
    for oid in range(1, 4):
        shop.put(oid, minutes=oid)
    connect("shop", shop_spec(server.url))
    sync(cli, "shop")
    before = (_user_rows("orders"), _user_rows("orders_line_items"), _state("shop", "orders"))
    for oid in range(4, 12):
        shop.put(oid, minutes=10 + oid)
    shop.put(2, minutes=50, items=0)

    real_commit = IcebergSink.commit
    calls = {"n": 0}

    def crashing_commit(self: IcebergSink, namespace: str, table: str, *args: Any, **kw: Any):
        calls["n"] += 1
        if table == "orders" and kw.get("segment") == 0:
            raise RuntimeError("injected crash after the files were written")
        return real_commit(self, namespace, table, *args, **kw)

    monkeypatch.setattr(IcebergSink, "commit", crashing_commit)
    status = sync(cli, "shop", ok=False)["orders"]
    assert "injected crash" in status["error"]
    monkeypatch.setattr(IcebergSink, "commit", real_commit)
    after = (_user_rows("orders"), _user_rows("orders_line_items"), _state("shop", "orders"))
    # Children commit first: they may hold the segment's new child rows, never the parent.
    assert after[0] == before[0] and after[2] == before[2]

    status = sync(cli, "shop")["orders"]
    assert status["status"] == "succeeded"
    assert_exact(shop)


def test_html_page_fails_one_stream_with_a_clear_error_while_the_other_commits(
    cli: Cli, server: ApiServer, connect: Callable[..., None]
) -> None:
    good = [{"id": i} for i in range(5)]
    server.route("/good", lambda req: Reply({"data": good}))

    def html(req: RecordedRequest) -> Reply:
        if int(req.params.get("page", 1)) == 2:
            return Reply(
                b"<html><body>Maintenance</body></html>", headers={"Content-Type": "text/html"}
            )
        return Reply({"data": [{"id": 1}, {"id": 2}]})

    server.route("/html", html)
    spec = {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "api_key", "query_param": "key"},
        "rate_limit": {"max_retries": 1, "backoff_base": 0.01},
        "streams": [
            {
                "name": "flaky",
                "endpoint": "/html",
                "data_path": "data",
                "pagination": {"type": "page_number", "page_size_param": "size", "page_size": 2},
            },
            {"name": "good", "endpoint": "/good", "data_path": "data", "primary_key": ["id"]},
        ],
    }
    spec_file = Path("html.json")
    spec_file.write_bytes(orjson.dumps(spec))
    assert cli("connect", "mixed", "--spec", str(spec_file), "--auth-token", "sekret-key").code == 0
    result = cli("connections", "sync", "mixed")
    assert result.code == 1
    status = status_streams(cli, "mixed")
    assert status["good"]["status"] == "succeeded" and status["good"]["rows"] == 5
    error = status["flaky"]["error"]
    assert status["flaky"]["status"] == "failed"
    assert "flaky" in error and "page 2" in error and "/html" in error, error
    assert "sekret-key" not in error and "sekret-key" not in result.out + result.err
    assert rows("mixed", "good") == good
    # Nothing of the failed stream is visible as if it had finished.
    state = _state("mixed", "flaky") if ("mixed", "flaky") in _tables() else {}
    assert state.get("rq.complete") != "true"


def _tables() -> set[tuple[str, str]]:
    reset_settings()
    return set(open_sink(get_settings()).all_tables())


# --- --no-wait ------------------------------------------------------------------------------


def test_no_wait_returns_a_sync_id_and_a_background_process_finishes(
    rq_home: Path, shop: Shop, server: ApiServer, write_spec: Callable[..., Path]
) -> None:
    import time

    for oid in range(1, 10):
        shop.put(oid, minutes=oid)
    spec = write_spec(shop_spec(server.url))
    assert run_rq("connect", "bg", "--spec", str(spec)).code == 0
    result = run_rq("connections", "sync", "bg", "--no-wait")
    assert result.code == 0, result.err
    sync_id = result.out.strip()
    assert len(sync_id) >= 16 and " " not in sync_id

    deadline = time.monotonic() + 60
    while True:  # a condition wait on the durable registry, bounded
        streams = orjson.loads(run_rq("connections", "status", "bg", "--json").out)["streams"]
        if streams[0]["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
    assert streams[0]["status"] == "succeeded", streams
    assert streams[0]["rows"] == 9
    assert_exact(shop, "bg")


def test_a_segment_also_ends_after_segment_seconds(
    cli: Cli,
    shop: Shop,
    server: ApiServer,
    connect: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slow API still commits (and can resume) every `segment_seconds`: at 0, every page
    is a segment of its own, one commit each, and nothing is lost or doubled."""
    for oid in range(1, 8):
        shop.put(oid, minutes=oid, items=2)
    monkeypatch.setenv("RAWQUERY_SEGMENT_SECONDS", "0")
    reset_settings()
    connect("shop", shop_spec(server.url))
    assert sync(cli, "shop")["orders"]["rows"] == 7
    assert_exact(shop)
    table = open_sink(get_settings()).catalog.load_table("shop.orders")
    segments = {s.summary["rq.segment"] for s in table.metadata.snapshots if s.summary}
    assert segments == {"0", "1", "2"}  # pages of 3, 3 and 1 orders
