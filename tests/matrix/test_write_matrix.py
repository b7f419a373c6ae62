"""Every write mode x every table state x both runners x with and without `expand`.

The cells are generated, not chosen: each one drives a real local API through the states
that lead up to the sync under test, keeps a model of what the table must hold (the
INTERFACE's sync semantics applied to exactly what the API served), and compares the
table, the child table, the stream's status, rows and cursor with it after every sync.

write modes   append (no key), merge (key), incremental (key + cursor), incremental
              append (cursor, no key), full refresh by `--full-refresh`, full refresh by
              `sync_modes: ["full_refresh"]`
table states  absent; created by a sync that found no records; with rows; after a schema
              change (the previous sync added a column); after a failed sync (it committed
              some segments, then the API failed)
runners       embedded (in this process), distributed (two real Celery workers)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet

from rawquery_workers.cli.app import main
from rawquery_workers.settings import reset_settings
from tests.distributed.conftest import Dist, Workers
from tests.e2e.helpers import Result, all_rows
from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.redis_server import RedisServer, redis_server_binary

MODES = [
    "append",
    "merge",
    "incremental",
    "incremental_append",
    "full_refresh_flag",
    "full_refresh_modes",
]
STATES = ["absent", "empty", "rows", "schema_changed", "after_failure"]
RUNNERS = ["embedded", "distributed"]
PAGE = 3  # records per page, and per segment: several segments per sync
FAIL_AT = 2 * PAGE  # the failing sync's API fails from its third page on
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
TOKEN = "matrix-token"

CELLS = [
    pytest.param(
        mode,
        state,
        runner,
        expand,
        id=f"{mode}-{state}-{runner}-{'expand' if expand else 'flat'}",
        marks=[pytest.mark.distributed, pytest.mark.redis] if runner == "distributed" else [],
    )
    for mode, state, runner, expand in itertools.product(MODES, STATES, RUNNERS, [False, True])
]


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the API --------------------------------------------------------------------------------


class Orders:
    """An orders API: offset pages sorted by (updated_at, id), `updated_since` filtering,
    and a switch that makes it fail (HTTP 400) from offset FAIL_AT on."""

    def __init__(self) -> None:
        self.records: dict[int, dict[str, Any]] = {}
        self.failing = False
        self.served: list[dict[str, Any]] = []  # what the last walk answered, in order

    def listing(self, since: str | None) -> list[dict[str, Any]]:
        rows = sorted(self.records.values(), key=lambda r: (r["updated_at"], r["id"]))
        if since:
            rows = [r for r in rows if instant(r["updated_at"]) >= instant(since)]
        return rows

    def answer(self, request: RecordedRequest) -> Reply:
        if request.header("authorization") != f"Bearer {TOKEN}":
            return Reply({"error": "bad token"}, 401)
        offset, limit = int(request.params["offset"]), int(request.params["limit"])
        if self.failing and offset >= FAIL_AT:
            return Reply({"error": "the API broke"}, 400)
        listing = self.listing(request.params.get("updated_since"))
        page = listing[offset : offset + limit]
        if offset == 0:
            self.served = []
        self.served += page
        return Reply({"data": page, "total": len(listing)})

    # how the data evolves between syncs

    def put(self, oid: int, minutes: int, status: str = "paid", **extra: Any) -> None:
        self.records[oid] = {
            "id": oid,
            "status": status,
            "amount": oid * 10 + minutes,
            "updated_at": at(minutes),
            "line_items": [
                {"id": oid * 1000 + minutes * 3 + n, "sku": f"S{n}", "qty": n + 1}
                for n in range(1 + oid % 3)
            ],
            **extra,
        }

    def version_a(self) -> None:
        for oid in range(1, 11):
            self.put(oid, oid - 1)

    def schema_change(self) -> None:
        """Two records change and bring a new field."""
        for oid in (9, 10):
            self.put(oid, 40 + oid, channel="web")

    def version_b(self) -> None:
        """Deletes, unchanged records, changes, new records; the newest record of the
        previous version stays as it was (the cursor boundary, served again)."""
        if not self.records:
            self.version_a()
            return
        boundary = max(self.records.values(), key=lambda r: (r["updated_at"], r["id"]))["id"]
        extra = {"channel": "app"} if any("channel" in r for r in self.records.values()) else {}
        for oid in (1, 2):
            self.records.pop(oid, None)
        for oid in (7, 8, 9, 10):
            if oid != boundary:
                self.put(oid, 100 + oid, status="shipped", **extra)
        for oid in (11, 12, 13):
            self.put(oid, 200 + oid, **extra)


# --- the model of what the tables must hold -------------------------------------------------


@dataclass
class Model:
    mode: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # parent rows, as the API sent
    cursor: str | None = None

    @property
    def keyed(self) -> bool:
        return self.mode not in ("append", "incremental_append")

    @property
    def has_cursor(self) -> bool:
        return self.mode not in ("append", "merge")

    def apply(self, served: list[dict[str, Any]], full_refresh: bool) -> int:
        """Apply one successful sync of `served`; the number of rows it writes."""
        since = None if full_refresh or not self.has_cursor else self.cursor
        kept = [r for r in served if since is None or instant(r["updated_at"]) >= instant(since)]
        if full_refresh:
            self.rows = list(kept)
        elif self.keyed:
            by_id = {r["id"]: r for r in self.rows}
            by_id.update({r["id"]: r for r in kept})
            self.rows = list(by_id.values())
        else:
            if since is not None:  # landed records at or after the cursor are not landed again
                landed = [r for r in self.rows if instant(r["updated_at"]) >= instant(since)]
                kept = [r for r in kept if r not in landed]
            self.rows += kept
        if self.has_cursor and served:
            newest = max(instant(r["updated_at"]) for r in served)
            old = instant(self.cursor) if self.cursor else None
            if full_refresh or old is None or newest > old:
                self.cursor = at(int((newest - T0).total_seconds() // 60))
        return len(kept)

    def expected(self) -> list[tuple[Any, ...]]:
        return sorted(_row(r) for r in self.rows)

    def expected_children(self) -> list[tuple[Any, ...]]:
        return sorted(
            (r["id"], item["id"], item["sku"], item["qty"])
            for r in self.rows
            for item in r["line_items"]
        )


def _row(record: dict[str, Any]) -> tuple[Any, ...]:
    return (
        record["id"],
        record["status"],
        record["amount"],
        instant(record["updated_at"]),
        record.get("channel"),
    )


# --- the fixtures ---------------------------------------------------------------------------


@dataclass
class Lab:
    home: Path
    api: ApiServer
    env: dict[str, str]
    redis_url: str | None = None

    def run(self, runner: str, *args: str) -> Result:
        import contextlib
        import io
        import os

        saved = dict(os.environ)
        os.environ.update(self.env)
        if runner == "distributed":
            assert self.redis_url is not None
            os.environ["RAWQUERY_REDIS_URL"] = self.redis_url
        else:
            os.environ.pop("RAWQUERY_REDIS_URL", None)
        out, err = io.StringIO(), io.StringIO()
        code = 0
        try:
            reset_settings()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            reset_settings()
        return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("matrix")
    home = root / "home"
    home.mkdir()
    (root / "warehouse").mkdir()
    env = {
        "RAWQUERY_HOME": str(home),
        "RAWQUERY_CATALOG_URI": f"sqlite:///{home / 'catalog.db'}",
        "RAWQUERY_WAREHOUSE": (root / "warehouse").as_uri(),
        "RAWQUERY_SECRET_KEY": Fernet.generate_key().decode(),
        "RAWQUERY_SEGMENT_RECORDS": str(PAGE),
    }
    with pytest.MonkeyPatch.context() as patch, ApiServer() as api:
        for key, value in env.items():  # for this process's reads of the tables too
            patch.setenv(key, value)
        patch.delenv("RAWQUERY_REDIS_URL", raising=False)
        reset_settings()
        yield Lab(home, api, env)
    reset_settings()


@pytest.fixture(scope="module")
def pool(lab: Lab) -> Iterator[str]:
    """Two real Celery workers on a private Redis, shared by the distributed cells."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not on PATH")
    import os

    with RedisServer() as redis:
        full = {k: v for k, v in os.environ.items() if not k.startswith("RAWQUERY_")}
        env = {**full, **lab.env, "RAWQUERY_REDIS_URL": redis.url, "PYTHONUNBUFFERED": "1"}
        workers = Workers(Dist(lab.home, redis, env))
        workers.start(2)
        try:
            yield redis.url
        finally:
            workers.stop_all()


def _spec(lab: Lab, name: str, mode: str, expand: bool) -> dict[str, Any]:
    stream: dict[str, Any] = {
        "name": "orders",
        "endpoint": f"/{name}/orders",
        "data_path": "data",
        "pagination": {
            "type": "offset",
            "limit_param": "limit",
            "page_size": PAGE,
            "total_path": "total",
        },
        "types": {"updated_at": "timestamp"},
    }
    if mode not in ("append", "incremental_append"):
        stream["primary_key"] = ["id"]
    if mode not in ("append", "merge"):
        stream["cursor_field"] = "updated_at"
        stream["params"] = {"updated_since": "{{cursor}}"}
    if mode == "full_refresh_modes":
        stream["sync_modes"] = ["full_refresh"]
    if expand:
        stream["expand"] = {"line_items": {"primary_key": "id", "parent_key": "order_id"}}
    return {
        "version": "1",
        "base_url": lab.api.url,
        "auth": {"type": "bearer"},
        "rate_limit": {"max_retries": 0},
        "streams": [stream],
    }


# --- the matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "state", "runner", "expand"), CELLS)
def test_cell(
    mode: str, state: str, runner: str, expand: bool, lab: Lab, request: pytest.FixtureRequest
) -> None:
    if runner == "distributed":
        lab.redis_url = request.getfixturevalue("pool")
    name = f"m-{MODES.index(mode)}{STATES.index(state)}{RUNNERS.index(runner)}{int(expand)}"
    orders = Orders()
    lab.api.route(f"/{name}/orders", orders.answer)
    spec_file = lab.home.parent / f"{name}.json"
    spec_file.write_bytes(orjson.dumps(_spec(lab, name, mode, expand)))
    connected = lab.run(runner, "connect", name, "--spec", str(spec_file), "--auth-token", TOKEN)
    if expand and mode in ("append", "incremental_append"):
        # `expand` needs the parent's primary key: the spec is refused, nothing is stored.
        assert connected.code == 2, connected.out + connected.err
        assert "expand" in connected.err and "primary_key" in connected.err, connected.err
        assert name not in lab.run(runner, "connections", "list", "--json").out
        return
    assert connected.code == 0, connected.out + connected.err
    model = Model(mode)
    flag = mode == "full_refresh_flag"
    refresh = mode.startswith("full_refresh")
    always_full = mode == "full_refresh_modes"

    def sync(full: bool, expect_ok: bool = True) -> dict[str, Any]:
        args = ["connections", "sync", name, *(["--full-refresh"] if full else [])]
        done = lab.run(runner, *args)
        assert done.code == (0 if expect_ok else 1), done.out + done.err
        status = lab.run(runner, "connections", "status", name, "--json")
        assert status.code == 0, status.err
        stream = orjson.loads(status.out)["streams"][0]
        assert stream["status"] == ("succeeded" if expect_ok else "failed"), stream
        return stream

    def check(stream: dict[str, Any], written: int) -> None:
        assert _table(name, "orders", expand) == model.expected()
        if expand:
            assert _children(name) == model.expected_children()
        assert stream["rows"] == written, stream
        assert stream["warnings"] == [], stream
        if model.cursor is not None:
            assert stream["cursor"] and instant(stream["cursor"]) == instant(model.cursor), stream
        else:
            assert not stream["cursor"], stream

    # the states that lead up to the sync under test
    if state == "empty":
        check(sync(flag), model.apply(orders.served, refresh))
    if state in ("rows", "schema_changed", "after_failure"):
        orders.version_a()
        check(sync(False), model.apply(orders.served, always_full))
    if state == "schema_changed":
        orders.schema_change()
        stream = sync(False)
        check(stream, model.apply(orders.served, always_full))
        assert any("channel" in line for line in stream["schema_changes"]), stream
    orders.version_b()
    before = 0
    if state == "after_failure":
        orders.failing = True
        failed = sync(flag, expect_ok=False)
        assert "the API broke" in (failed["error"] or ""), failed
        before = 0 if refresh else failed["rows"]
        assert refresh or 0 < before <= FAIL_AT, failed  # its first segments committed
        orders.failing = False
    # the sync under test
    stream = sync(flag)
    # after a failure it resumed where the failed walk stopped: both walks served it once
    written = model.apply(orders.served, refresh)
    check(stream, written - before)
    # and a sync with nothing new changes nothing (keyed: no duplicates; append: the next
    # full walk lands again; cursors: nothing at or after the cursor is landed twice)
    stream = sync(flag)
    check(stream, model.apply(orders.served, refresh))


def _table(connection: str, table: str, expand: bool) -> list[tuple[Any, ...]]:
    rows = all_rows(connection, table)
    assert expand or all(isinstance(r["line_items"], str) for r in rows)
    assert not expand or all("line_items" not in r for r in rows)
    return sorted(
        (r["id"], r["status"], r["amount"], r["updated_at"], r.get("channel")) for r in rows
    )


def _children(connection: str) -> list[tuple[Any, ...]]:
    rows = all_rows(connection, "orders_line_items")
    return sorted((r["order_id"], r["id"], r["sku"], r["qty"]) for r in rows)
