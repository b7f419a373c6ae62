"""The values the registry hands out: frozen records of connections, syncs and stream runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, RowMapping

from rawquery_workers.registry.db import stream_runs


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    name: str
    spec: dict[str, Any]
    schedule: str | None
    created_at: datetime
    updated_at: datetime
    last_scheduled_at: datetime | None


@dataclass(frozen=True, slots=True)
class StreamRunRecord:
    """One stream's part of one sync; `status` "never" (and no sync_id) if never synced."""

    sync_id: str | None
    stream: str
    status: str
    rows: int = 0
    pages: int = 0
    error: str | None = None
    cursor: str | None = None
    schema_changes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = None
    progress: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SyncRecord:
    id: str
    connection: str
    status: str
    full_refresh: bool
    trigger: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    streams: tuple[StreamRunRecord, ...]
    spec: dict[str, Any] | None = None  # as planned (None: a sync recorded before v2)


def connection_record(row: RowMapping) -> ConnectionRecord:
    return ConnectionRecord(
        name=row["name"],
        spec=row["spec"],
        schedule=row["schedule"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_scheduled_at=row["last_scheduled_at"],
    )


def run_record(row: RowMapping) -> StreamRunRecord:
    return StreamRunRecord(
        sync_id=row["sync_id"],
        stream=row["stream"],
        status=row["status"],
        rows=row["rows"] or 0,
        pages=row["pages"] or 0,
        error=row["error"],
        cursor=row["cursor"],
        schema_changes=tuple(row["schema_changes"] or ()),
        warnings=tuple(row["warnings"] or ()),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        seconds=row["seconds"],
        progress=row["progress"],
    )


def sync_record(conn: Connection, row: RowMapping) -> SyncRecord:
    runs = conn.execute(
        select(stream_runs).where(stream_runs.c.sync_id == row["id"]).order_by(stream_runs.c.id)
    ).mappings()
    return SyncRecord(
        id=row["id"],
        connection=row["connection"],
        status=row["status"],
        full_refresh=bool(row["full_refresh"]),
        trigger=row["trigger"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        streams=tuple(run_record(r) for r in runs),
        spec=row.get("spec"),
    )
