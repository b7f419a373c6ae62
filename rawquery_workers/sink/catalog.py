"""The Iceberg SQL catalog named `rawquery`: one per (uri, warehouse) in a process.

SQLite (the embedded default) is shared by several processes (CLI, background syncs,
workers), so every connection runs in WAL mode (readers never block the writer) with a
busy timeout (a writer waits for the other instead of failing at once). pyiceberg builds
its own SQLAlchemy engine, so the pragmas are installed by a `connect` listener on that
engine; the one connection pyiceberg opened while creating its tables is discarded so that
every pooled connection has them. PostgreSQL needs nothing special but a pre-ping, so a
restarted server does not fail the next commit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyiceberg.catalog.sql import SqlCatalog
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from rawquery_workers.errors import SinkError
from rawquery_workers.private_files import private_sqlite_file
from rawquery_workers.settings import CATALOG_NAME, Settings, get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000

_cache: dict[tuple[str, str, frozenset[tuple[str, str]]], SqlCatalog] = {}
_cache_lock = threading.Lock()


def open_catalog(settings: Settings | None = None) -> SqlCatalog:
    """The process-wide catalog for `settings` (RAWQUERY_CATALOG_URI, RAWQUERY_WAREHOUSE)."""
    settings = settings or get_settings()
    fileio = settings.fileio_properties
    key = (settings.effective_catalog_uri, settings.effective_warehouse, _frozen(fileio))
    with _cache_lock:
        catalog = _cache.get(key)
        if catalog is None:
            catalog = _cache[key] = new_catalog(key[0], key[1], fileio)
    return catalog


def close_catalogs() -> None:
    """Dispose every cached catalog's connections (tests, process shutdown)."""
    with _cache_lock:
        for catalog in _cache.values():
            catalog.close()
        _cache.clear()


def new_catalog(uri: str, warehouse: str, fileio: Mapping[str, str] | None = None) -> SqlCatalog:
    """A new, uncached catalog object (its own connection pool) on `uri` and `warehouse`;
    `fileio` holds the warehouse's FileIO properties (`s3.endpoint`, keys: see
    `Settings.fileio_properties`), which every table loaded through the catalog inherits."""
    url = make_url(uri)
    shown = url.render_as_string(hide_password=True)
    sqlite = url.get_backend_name() == "sqlite"
    properties: dict[str, str] = {**(fileio or {}), "uri": uri, "warehouse": warehouse}
    if not sqlite:
        properties["pool_pre_ping"] = "true"
    try:
        if sqlite:
            _prepare_sqlite_file(url.database)
        catalog = _sql_catalog(properties)
    except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
        raise SinkError(
            f"cannot open the Iceberg catalog at {shown}: {_first_line(exc)}; "
            "check RAWQUERY_CATALOG_URI and that the database is reachable"
        ) from None
    if sqlite:
        event.listen(catalog.engine, "connect", _sqlite_pragmas)
        catalog.engine.dispose()  # drop the connection opened before the listener existed
    return catalog


def _sql_catalog(properties: dict[str, str]) -> SqlCatalog:
    """pyiceberg creates its tables on first open; workers opening a new catalog at the same
    moment race to do so and the losers see "table ... already exists": open again."""
    try:
        return SqlCatalog(CATALOG_NAME, **properties)
    except SQLAlchemyError as exc:
        if "already exists" not in str(exc):
            raise
        return SqlCatalog(CATALOG_NAME, **properties)


def _frozen(properties: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(properties.items())


def _prepare_sqlite_file(database: str | None) -> None:
    """Switch the file to WAL before pyiceberg first touches it (WAL mode is persistent)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    private_sqlite_file(database)  # 0600: the registry shares this database file
    conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
