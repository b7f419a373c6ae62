"""The registry's tables, its engines and its schema version.

The registry lives in the Iceberg catalog's database (SQLite embedded, PostgreSQL in
production). Every table is prefixed `rq_` so it never meets pyiceberg's `iceberg_tables`
or `iceberg_namespace_properties`.

SQLite is shared by processes: each connection gets WAL mode and a busy timeout, and
write transactions start with `BEGIN IMMEDIATE` (see `write_tx`) so a transaction that
reads and then writes waits for the lock instead of failing with "database is locked".
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.types import TypeDecorator

from rawquery_workers.errors import ConfigError
from rawquery_workers.private_files import private_sqlite_file

SCHEMA_VERSION = 3
SQLITE_BUSY_TIMEOUT_MS = 30_000
_PG_SCHEMA_LOCK = 0x72715F736368  # "rq_sch": serialises schema changes across processes

Migration = Callable[[Connection], None]


# version -> the function taking a database from version-1 to version. Migrations see the
# old tables as they were; `ensure_schema` then creates any table that is new in the code.
def _v2_leases_and_steps(conn: Connection) -> None:
    """Version 2: each sync keeps its spec (`rq_syncs.spec`); the new tables (rq_sync_leases,
    rq_stream_steps, rq_workers) are created by `ensure_schema` after the migrations."""
    conn.execute(text("ALTER TABLE rq_syncs ADD COLUMN spec TEXT"))


def _v3_broker(conn: Connection) -> None:
    """Version 3: the Redis incarnation a sync's start and a stream's step were published
    to (`broker`), so that a Redis that lost its data has them published again; the worker
    running a sync's start (`starter`), so that its death does not leave streams unstarted."""
    conn.execute(text("ALTER TABLE rq_syncs ADD COLUMN broker TEXT"))
    conn.execute(text("ALTER TABLE rq_syncs ADD COLUMN starter TEXT"))
    if inspect(conn).has_table("rq_stream_steps"):  # from version 1 it is created afresh
        conn.execute(text("ALTER TABLE rq_stream_steps ADD COLUMN broker TEXT"))


MIGRATIONS: dict[int, Migration] = {2: _v2_leases_and_steps, 3: _v3_broker}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite stores them naive, PostgreSQL as timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("registry timestamps must be timezone-aware (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """A JSON value kept as text (portable, and readable with any SQL client)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else orjson.dumps(value).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else orjson.loads(value)


metadata = MetaData()

meta = Table(
    "rq_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

connections = Table(
    "rq_connections",
    metadata,
    Column("name", Text, primary_key=True),
    Column("spec", JSONText, nullable=False),
    Column("schedule", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_scheduled_at", UTCDateTime, nullable=True),
)

credentials = Table(
    "rq_credentials",
    metadata,
    Column(
        "connection",
        Text,
        ForeignKey("rq_connections.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("ciphertext", Text, nullable=False),  # a Fernet token, never plain text
    Column("updated_at", UTCDateTime, nullable=False),
)

syncs = Table(
    "rq_syncs",
    metadata,
    Column("id", Text, primary_key=True),  # uuid4 hex
    Column(
        "connection",
        Text,
        ForeignKey("rq_connections.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("status", Text, nullable=False),  # queued | running | succeeded | failed
    Column("full_refresh", Boolean, nullable=False),
    Column("trigger", Text, nullable=False),  # manual | schedule
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("error", Text, nullable=True),
    # The spec the sync was planned with: a running sync keeps it whatever `update` does.
    Column("spec", JSONText, nullable=True),
    # The Redis incarnation its start was published to (distributed/redis_keys.incarnation).
    Column("broker", Text, nullable=True),
    # The worker running its start (rq.start_sync) until every stream is started.
    Column("starter", Text, nullable=True),
    Index("ix_rq_syncs_connection_status", "connection", "status"),
)

stream_runs = Table(
    "rq_stream_runs",
    metadata,
    # Increases with every run recorded: "latest" means the highest id.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sync_id", Text, ForeignKey("rq_syncs.id", ondelete="CASCADE"), nullable=False),
    Column("stream", Text, nullable=False),
    Column("status", Text, nullable=False),  # queued | running | succeeded | failed
    Column("rows", Integer, nullable=False, default=0),
    Column("pages", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("cursor", Text, nullable=True),
    Column("schema_changes", JSONText, nullable=True),
    Column("warnings", JSONText, nullable=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("seconds", Float, nullable=True),
    Column("progress", JSONText, nullable=True),  # numbers only: see runner/progress.py
    UniqueConstraint("sync_id", "stream", name="uq_rq_stream_runs_sync_stream"),
    Index("ix_rq_stream_runs_stream", "stream"),
)


# One row per connection that has ever synced: THE lock of its syncs, in both modes
# (registry/leases.py). `generation` grows with every holder; `expires_at` is epoch seconds.
sync_leases = Table(
    "rq_sync_leases",
    metadata,
    Column("connection", Text, primary_key=True),
    Column("sync_id", Text, nullable=True),  # null: free
    Column("mode", Text, nullable=True),  # embedded | distributed
    Column("owner", JSONText, nullable=True),  # LockOwner: sync id, host, pid, started_at
    Column("generation", Integer, nullable=False, default=0),
    Column("expires_at", Float, nullable=False, default=0.0),
)


# Distributed mode: where each running stream's chain stands (registry/takeover.py). `job`
# is the StreamJob last handed on (ids, references, scrubbed resume state); `epoch` grows
# with every takeover, and a step carrying an older one is a late delivery, dropped.
stream_steps = Table(
    "rq_stream_steps",
    metadata,
    Column("sync_id", Text, primary_key=True),
    Column("stream", Text, primary_key=True),
    Column("epoch", Integer, nullable=False, default=0),
    Column("job", JSONText, nullable=False),
    Column("worker", Text, nullable=True),  # the Celery node running its current step
    Column("handed_at", Float, nullable=False),  # epoch seconds
    Column("broker", Text, nullable=True),  # the Redis incarnation its message went to
)

# Every worker's main process says it is alive here every few seconds.
workers = Table(
    "rq_workers",
    metadata,
    Column("node", Text, primary_key=True),  # the Celery node name, worker@host
    Column("pid", Integer, nullable=False),
    Column("beat_at", Float, nullable=False),  # epoch seconds
)


# --- engines ---------------------------------------------------------------------------

_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()


def create_engine_for(uri: str) -> Engine:
    """The engine for `uri`, one per URI per process (a forked worker gets its own)."""
    key = (os.getpid(), uri)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _new_engine(uri)
        return engine


def dispose_engines() -> None:
    """Close every cached engine of this process (tests, shutdown)."""
    with _engines_lock:
        for (pid, _), engine in list(_engines.items()):
            if pid == os.getpid():
                engine.dispose()
        _engines.clear()


def _new_engine(uri: str) -> Engine:
    try:
        url = make_url(uri)
    except ArgumentError:
        raise ConfigError(
            "RAWQUERY_CATALOG_URI is not a SQLAlchemy URL (expected sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB)"
        ) from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")  # psycopg 3 is what we ship
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    raise ConfigError(
        f"RAWQUERY_CATALOG_URI uses '{backend}'; the registry supports sqlite and postgresql"
    )


def _sqlite_engine(url: URL) -> Engine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            private_sqlite_file(database)  # 0600: it holds credentials (encrypted) and specs
        except OSError as exc:
            raise ConfigError(
                f"cannot create the registry database {database} or its folder: {exc.strerror}"
            ) from None
    engine = create_engine(
        url,
        hide_parameters=True,  # errors never echo bound values (ciphertexts, specs)
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("rq_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock up front."""
    with engine.connect() as conn:
        conn.execution_options(rq_write=True)
        with conn.begin():
            yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


# --- schema version ------------------------------------------------------------------


def ensure_schema(
    engine: Engine,
    *,
    version: int = SCHEMA_VERSION,
    migrations: dict[int, Migration] | None = None,
) -> int:
    """Create the registry tables or migrate them to `version`; returns that version.

    A database written by a newer rawquery-workers is refused rather than misread.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    with read_tx(engine) as conn:
        found = _stored_version(conn)
    _refuse_newer(found, version, engine)
    if found == version:
        return version
    with write_tx(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHEMA_LOCK})
        found = _stored_version(conn)  # another process may have got here first
        _refuse_newer(found, version, engine)
        if found is None:
            metadata.create_all(conn)
            conn.execute(meta.insert().values(key="schema_version", value=str(version)))
        elif found < version:
            for step in range(found + 1, version + 1):
                if step not in migrations:
                    raise ConfigError(f"no migration of the registry to schema version {step}")
                migrations[step](conn)
            metadata.create_all(conn)
            conn.execute(
                meta.update().where(meta.c.key == "schema_version").values(value=str(version))
            )
    return version


def _stored_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table(meta.name):
        return None
    value = conn.execute(
        select(meta.c.value).where(meta.c.key == "schema_version")
    ).scalar_one_or_none()
    return None if value is None else int(value)


def _refuse_newer(found: int | None, version: int, engine: Engine) -> None:
    if found is not None and found > version:
        where = engine.url.render_as_string(hide_password=True)
        raise ConfigError(
            f"the registry in {where} has schema version {found}, newer than this "
            f"rawquery-workers understands ({version}); upgrade rawquery-workers"
        )


def utcnow() -> datetime:
    return datetime.now(UTC)
