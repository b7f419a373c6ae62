"""The connection registry on real SQLite and real PostgreSQL."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import Engine

from rawquery_workers.errors import ConfigError, ConflictError, NotFoundError
from rawquery_workers.registry import KEEP, Registry, dispose_engines, ensure_schema, open_registry
from rawquery_workers.registry import db as regdb
from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.spec.credentials import Credentials
from tests.support.postgres import private_schema_url

POSTGRES_URL = os.environ.get(
    "RAWQUERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SPEC = {"version": "1", "base_url": "https://api.example.com", "streams": [{"name": "users"}]}
CANARY = "canary-7f3c1e9a-do-not-store-me"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_uri(request: pytest.FixtureRequest, rq_home: Path) -> Iterator[str]:
    """The registry database URI: a file in RAWQUERY_HOME, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{rq_home / 'catalog.db'}"
        dispose_engines()
        return
    with private_schema_url("rqtest") as url:
        try:
            yield url
        finally:
            dispose_engines()


@pytest.fixture
def registry(db_uri: str, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("RAWQUERY_CATALOG_URI", db_uri)
    reset_settings()
    return open_registry()


def _count(engine: Engine, table: str, where: str = "", **params: object) -> int:
    with engine.connect() as conn:
        sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(conn.execute(text(sql), params).scalar_one())


# --- connections ----------------------------------------------------------------------


def test_create_get_list_update(registry: Registry) -> None:
    before = datetime.now(UTC)
    created = registry.create_connection("shop", SPEC, Credentials(token="t1"), "daily")
    assert created.name == "shop" and created.spec == SPEC and created.schedule == "daily"
    assert created.created_at.tzinfo is UTC and created.created_at >= before
    assert created.last_scheduled_at is None
    registry.create_connection("alpha", {"v": 2}, Credentials())
    assert [c.name for c in registry.list_connections()] == ["alpha", "shop"]
    assert registry.get_credentials("alpha") == Credentials()

    new_spec = {**SPEC, "streams": [{"name": "orders"}]}
    updated = registry.update_connection("shop", spec_json=new_spec)
    assert updated.spec == new_spec and updated.schedule == "daily"  # schedule kept
    assert updated.updated_at >= created.updated_at and updated.created_at == created.created_at
    assert registry.get_credentials("shop").token == "t1"  # credentials kept

    registry.update_connection("shop", credentials=Credentials(token="t2"), schedule="hourly")
    assert registry.get_connection("shop").schedule == "hourly"
    assert registry.get_credentials("shop").token == "t2"
    registry.update_connection("shop", schedule=KEEP)
    assert registry.get_connection("shop").schedule == "hourly"
    registry.update_connection("shop", schedule=None)
    assert registry.get_connection("shop").schedule is None


def test_duplicate_name_is_a_conflict(registry: Registry) -> None:
    registry.create_connection("shop", SPEC, Credentials(token=CANARY))
    with pytest.raises(ConflictError) as info:
        registry.create_connection("shop", {"other": True}, Credentials(token=CANARY))
    assert str(info.value) == ("connection 'shop' already exists; use `rq connections update shop`")
    assert CANARY not in repr(info.value)
    assert registry.get_connection("shop").spec == SPEC


def test_missing_names_are_not_found(registry: Registry) -> None:
    message = "no connection named 'ghost'; see `rq connections list`"
    calls: list[Callable[[], object]] = [
        lambda: registry.get_connection("ghost"),
        lambda: registry.update_connection("ghost", spec_json=SPEC),
        lambda: registry.delete_connection("ghost"),
        lambda: registry.get_credentials("ghost"),
        lambda: registry.save_credentials("ghost", Credentials(token="x")),
        lambda: registry.create_sync("ghost", ["users"]),
        lambda: registry.mark_scheduled("ghost", datetime.now(UTC)),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as info:
            call()
        assert str(info.value) == message
    with pytest.raises(NotFoundError, match="no sync with id 'nope'"):
        registry.get_sync("nope")
    assert registry.list_connections() == []


def test_delete_removes_credentials_and_history(registry: Registry) -> None:
    registry.create_connection("shop", SPEC, Credentials(token="t"), "daily")
    registry.create_connection("keep", SPEC, Credentials(token="k"))
    for name in ("shop", "keep"):
        sync_id = registry.create_sync(name, ["users", "orders"])
        registry.mark_sync_started(sync_id)
        registry.update_stream_run(sync_id, "users", status="succeeded", rows=5)
        registry.mark_sync_finished(sync_id, "succeeded")
    registry.delete_connection("shop")

    engine = registry.engine
    assert _count(engine, "rq_connections", "name = :n", n="shop") == 0
    assert _count(engine, "rq_credentials", "connection = :n", n="shop") == 0
    assert _count(engine, "rq_syncs", "connection = :n", n="shop") == 0
    assert _count(engine, "rq_stream_runs") == 2  # only "keep"'s two runs remain
    assert registry.get_credentials("keep").token == "k"

    registry.create_connection("shop", SPEC, Credentials(token="again"))
    runs = registry.latest_stream_runs("shop", ["users"])
    assert [r.status for r in runs] == ["never"]
    assert registry.get_connection("shop").schedule is None


def test_save_credentials_commits_at_once(registry: Registry, db_uri: str) -> None:
    registry.create_connection("oauth", SPEC, Credentials(refresh_token="r1"))
    registry.save_credentials("oauth", Credentials(refresh_token="r2", access_token="a2"))
    other = create_engine(db_uri)  # a separate engine sees the committed row
    try:
        with other.connect() as conn:
            token = conn.execute(
                text("SELECT ciphertext FROM rq_credentials WHERE connection = 'oauth'")
            ).scalar_one()
    finally:
        other.dispose()
    assert Credentials.from_json(registry.vault.decrypt(token)).refresh_token == "r2"


def test_mark_scheduled_records_each_slot_once(registry: Registry) -> None:
    registry.create_connection("shop", SPEC, Credentials(), "hourly")
    slot = datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert registry.mark_scheduled("shop", slot) is True
    assert registry.mark_scheduled("shop", slot) is False  # a second beat: already fired
    assert registry.mark_scheduled("shop", slot - timedelta(hours=1)) is False
    assert registry.get_connection("shop").last_scheduled_at == slot
    assert registry.mark_scheduled("shop", slot + timedelta(hours=1)) is True


# --- syncs and stream runs ------------------------------------------------------------


def test_sync_lifecycle(registry: Registry) -> None:
    registry.create_connection("shop", SPEC, Credentials())
    sync_id = registry.create_sync("shop", ["users", "orders"], full_refresh=True)
    sync = registry.get_sync(sync_id)
    assert len(sync_id) == 32 and sync.status == "queued" and sync.full_refresh
    assert sync.trigger == "manual" and sync.started_at is None
    assert [(r.stream, r.status) for r in sync.streams] == [
        ("users", "queued"),
        ("orders", "queued"),
    ]
    assert registry.running_sync("shop") is None
    assert registry.running_sync("shop", include_queued=True).id == sync_id

    registry.mark_sync_started(sync_id)
    assert registry.running_sync("shop").id == sync_id
    started = datetime.now(UTC)
    registry.update_stream_run(sync_id, "users", status="running", started_at=started)
    registry.update_stream_run(
        sync_id, "users", status="succeeded", rows=42, pages=3, cursor="2025-01-01",
        schema_changes=["added column email"], warnings=["2 values kept in _rq_invalid"],
        finished_at=datetime.now(UTC), seconds=1.5, progress={"page": 3},
    )  # fmt: skip
    registry.mark_sync_finished(sync_id, "failed", error="streams failed: orders")

    sync = registry.get_sync(sync_id)
    assert sync.status == "failed" and sync.error == "streams failed: orders"
    assert sync.finished_at is not None and sync.finished_at.tzinfo is UTC
    users, orders = sync.streams
    assert (users.status, users.rows, users.pages, users.cursor) == (
        "succeeded",
        42,
        3,
        "2025-01-01",
    )
    assert users.schema_changes == ("added column email",)
    assert users.warnings == ("2 values kept in _rq_invalid",)
    assert users.started_at == started and users.seconds == 1.5 and users.progress == {"page": 3}
    # a run the sync never reached ends failed rather than queued forever
    assert orders.status == "failed" and orders.error == "streams failed: orders"
    assert registry.running_sync("shop", include_queued=True) is None


def test_bad_stream_run_updates_are_refused(registry: Registry) -> None:
    registry.create_connection("shop", SPEC, Credentials())
    sync_id = registry.create_sync("shop", ["users"], trigger="schedule")
    assert registry.get_sync(sync_id).trigger == "schedule"
    with pytest.raises(ValueError, match="unknown stream run fields: bogus"):
        registry.update_stream_run(sync_id, "users", bogus=1)
    with pytest.raises(ValueError, match="status"):
        registry.update_stream_run(sync_id, "users", status="done")
    with pytest.raises(NotFoundError, match="has no stream 'orders'"):
        registry.update_stream_run(sync_id, "orders", rows=1)
    with pytest.raises(ValueError, match="trigger"):
        registry.create_sync("shop", ["users"], trigger="cron")


def test_latest_stream_runs(registry: Registry) -> None:
    registry.create_connection("shop", SPEC, Credentials())
    registry.create_connection("other", SPEC, Credentials())
    first = registry.create_sync("shop", ["users", "orders"])
    registry.mark_sync_started(first)
    registry.update_stream_run(first, "users", status="succeeded", rows=10)
    registry.update_stream_run(first, "orders", status="failed", error="boom")
    registry.mark_sync_finished(first, "failed", error="streams failed: orders")
    second = registry.create_sync("shop", ["users"])
    registry.update_stream_run(second, "users", status="running", rows=3)
    noise = registry.create_sync("other", ["orders"])
    registry.update_stream_run(noise, "orders", status="succeeded", rows=99)

    runs = registry.latest_stream_runs("shop", ["orders", "users", "refunds"])
    assert [(r.stream, r.status, r.sync_id) for r in runs] == [
        ("orders", "failed", first),
        ("users", "running", second),
        ("refunds", "never", None),
    ]
    assert runs[0].error == "boom" and runs[1].rows == 3 and runs[2].rows == 0

    # a sync refused before it started (another one runs) does not hide the running one
    refused = registry.create_sync("shop", ["users"])
    registry.mark_sync_finished(refused, "failed", error="another sync of this connection runs")
    assert registry.get_sync(refused).streams[0].status == "failed"
    assert registry.latest_stream_runs("shop", ["users"])[0].sync_id == second
    assert registry.latest_stream_runs("shop", []) == []


def test_concurrent_writers(registry: Registry) -> None:
    """Two threads write at once (two SQLite connections): nothing is lost, nothing locks."""
    registry.create_connection("shared", SPEC, Credentials(token="0"))
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(25):
                name = f"c{worker}_{i}"
                registry.create_connection(name, SPEC, Credentials(token=name))
                sync_id = registry.create_sync(name, ["users"])
                registry.mark_sync_started(sync_id)
                registry.update_stream_run(sync_id, "users", status="succeeded", rows=i)
                registry.mark_sync_finished(sync_id, "succeeded")
                # a read-then-write transaction on a row both threads touch
                registry.save_credentials("shared", Credentials(token=name))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(registry.list_connections()) == 51
    assert _count(registry.engine, "rq_syncs", "status = 'succeeded'") == 50
    assert registry.get_credentials("c2_24").token == "c2_24"
    assert registry.get_credentials("shared").token in {"c1_24", "c2_24"}


# --- schema ---------------------------------------------------------------------------


def test_schema_version_is_recorded_and_newer_refused(registry: Registry) -> None:
    engine = registry.engine
    with engine.connect() as conn:
        version = conn.execute(
            select(regdb.meta.c.value).where(regdb.meta.c.key == "schema_version")
        ).scalar_one()
    assert version == str(regdb.SCHEMA_VERSION) == "3"
    assert ensure_schema(engine) == 3  # idempotent

    with engine.begin() as conn:
        conn.execute(regdb.meta.update().values(value="99"))
    with pytest.raises(ConfigError) as info:
        ensure_schema(engine)
    assert "schema version 99, newer than this rawquery-workers understands (3)" in str(info.value)
    assert "upgrade rawquery-workers" in str(info.value)
    reset_settings()
    with pytest.raises(ConfigError, match="schema version 99"):
        open_registry()


def test_migrations_run_in_order_once(registry: Registry) -> None:
    engine = registry.engine
    ran: list[int] = []
    steps = {4: lambda conn: ran.append(4), 5: lambda conn: ran.append(5)}
    assert ensure_schema(engine, version=5, migrations=steps) == 5
    assert ensure_schema(engine, version=5, migrations=steps) == 5
    assert ran == [4, 5]
    with pytest.raises(ConfigError, match="schema version 5"):
        ensure_schema(engine)  # this code knows version 3 only
    with pytest.raises(ConfigError, match="no migration of the registry to schema version 6"):
        ensure_schema(engine, version=6, migrations=steps)


def test_a_version_1_registry_gains_the_lease_and_takeover_tables_and_sync_specs(
    registry: Registry,
) -> None:
    engine = registry.engine
    new = [regdb.sync_leases, regdb.stream_steps, regdb.workers]
    registry.create_connection("shop", SPEC, Credentials())
    sync_id = registry.create_sync("shop", ["users"])
    with engine.begin() as conn:  # as rawquery-workers with schema version 1 left it
        for table in new:
            table.drop(conn)
        conn.execute(text("ALTER TABLE rq_syncs DROP COLUMN spec"))
        conn.execute(text("ALTER TABLE rq_syncs DROP COLUMN broker"))
        conn.execute(text("ALTER TABLE rq_syncs DROP COLUMN starter"))
        conn.execute(regdb.meta.update().values(value="1"))

    assert ensure_schema(engine) == 3

    with engine.connect() as conn:
        assert all(inspect(conn).has_table(table.name) for table in new)
        columns = {c["name"] for c in inspect(conn).get_columns("rq_syncs")}
        assert {"spec", "broker", "starter"} <= columns
        assert "broker" in {c["name"] for c in inspect(conn).get_columns("rq_stream_steps")}
    assert registry.get_connection("shop").spec == SPEC  # kept
    assert registry.get_sync(sync_id).spec is None  # planned before v2: the current spec


def test_registry_shares_the_database_with_the_iceberg_catalog(
    registry: Registry, db_uri: str
) -> None:
    from pyiceberg.catalog.sql import SqlCatalog

    warehouse = get_settings().effective_warehouse
    catalog = SqlCatalog("rawquery", uri=db_uri, warehouse=warehouse)
    catalog.create_namespace("shop")
    registry.create_connection("shop", SPEC, Credentials())
    ensure_schema(registry.engine)
    assert ("shop",) in catalog.list_namespaces()
    assert registry.get_connection("shop").spec == SPEC
    catalog.engine.dispose()


def test_engines_are_cached_per_uri(db_uri: str) -> None:
    assert regdb.create_engine_for(db_uri) is regdb.create_engine_for(db_uri)


def test_sqlite_engine_uses_wal_and_creates_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "catalog.db"
    engine = regdb.create_engine_for(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert path.parent.is_dir()
    finally:
        dispose_engines()


def test_unsupported_catalog_uri_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="supports sqlite and postgresql"):
        regdb.create_engine_for("mysql://x@localhost/db")
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        regdb.create_engine_for("nonsense")


# --- secrets at rest ------------------------------------------------------------------


def test_canary_secret_never_lands_in_plain_text(registry: Registry, rq_home: Path) -> None:
    creds = Credentials(
        token=CANARY, username=f"{CANARY}-user", password=f"{CANARY}-pw",
        client_id=f"{CANARY}-id", client_secret=f"{CANARY}-cs", refresh_token=f"{CANARY}-rt",
    )  # fmt: skip
    registry.create_connection("shop", SPEC, creds, "daily")
    registry.save_credentials("shop", creds.replace(access_token=f"{CANARY}-at"))
    registry.update_connection("shop", credentials=creds)
    registry.rotate_all()
    sync_id = registry.create_sync("shop", ["users"])
    registry.mark_sync_finished(sync_id, "succeeded")
    assert registry.get_credentials("shop").token == CANARY

    def leaks() -> list[Path]:
        files = [p for p in rq_home.rglob("*") if p.is_file()]
        assert files, "RAWQUERY_HOME holds no file"
        return [p for p in files if CANARY.encode() in p.read_bytes()]

    assert leaks() == []  # while open (the WAL file included)
    with registry.engine.connect() as conn:
        rows = conn.execute(text("SELECT ciphertext FROM rq_credentials")).scalars().all()
        assert rows and all(CANARY not in r for r in rows)
        assert conn.execute(select(func.count()).select_from(regdb.connections)).scalar() == 1
    dispose_engines()
    assert leaks() == []  # and after the WAL is checkpointed into the database


def test_a_version_2_registry_gains_the_broker_columns(registry: Registry) -> None:
    engine = registry.engine
    registry.create_connection("shop", SPEC, Credentials())
    sync_id = registry.create_sync("shop", ["users"])
    with engine.begin() as conn:  # as rawquery-workers with schema version 2 left it
        conn.execute(text("ALTER TABLE rq_syncs DROP COLUMN broker"))
        conn.execute(text("ALTER TABLE rq_syncs DROP COLUMN starter"))
        conn.execute(text("ALTER TABLE rq_stream_steps DROP COLUMN broker"))
        conn.execute(regdb.meta.update().values(value="2"))

    assert ensure_schema(engine) == 3

    with engine.connect() as conn:
        assert "broker" in {c["name"] for c in inspect(conn).get_columns("rq_syncs")}
        assert "broker" in {c["name"] for c in inspect(conn).get_columns("rq_stream_steps")}
    assert registry.get_sync(sync_id).status == "queued"  # kept
