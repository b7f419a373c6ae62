"""Running a planned sync (`connections.plan_sync`): each stream's segments in turn.

Embedded mode runs the steps of `pipeline.py` here, in the calling process; distributed
mode hands the same steps to Celery (`tasks.py`). Either way the registry records a sync
and one run per stream, and one sync of a connection runs at a time.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rawquery_workers import pipeline
from rawquery_workers.context import ConnectionContext, StreamContext
from rawquery_workers.errors import RawqueryError
from rawquery_workers.registry import Registry, open_registry
from rawquery_workers.settings import Settings, get_settings
from rawquery_workers.staging import Staging

ProgressHook = Callable[[dict[str, Any]], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    name: str
    status: str
    rows: int = 0
    pages: int = 0
    seconds: float = 0.0
    error: str | None = None
    cursor: str | None = None
    warnings: list[str] = field(default_factory=list)
    schema_changes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    sync_id: str
    connection: str
    streams: list[StreamOutcome]

    @property
    def ok(self) -> bool:
        return all(s.status == "succeeded" for s in self.streams)


def run_sync(
    sync_id: str,
    *,
    registry: Registry | None = None,
    settings: Settings | None = None,
    on_progress: ProgressHook | None = None,
) -> SyncOutcome:
    """Run a planned sync in this process (embedded mode), holding the connection's lock."""
    from rawquery_workers.locks import LocalFileLock, sync_conflict

    settings = settings or get_settings()
    registry = registry or open_registry(settings)
    sync = registry.get_sync(sync_id)
    lock = LocalFileLock.for_connection(sync.connection, sync_id=sync_id, home=settings.home_dir)
    if not lock.acquire():
        owner = lock.owner_info()
        registry.finish_sync(sync_id, "failed", error="another sync of this connection runs")
        raise sync_conflict(sync.connection, owner)
    try:
        return _run_streams(registry, settings, sync_id, sync, on_progress)
    finally:
        lock.release()


def _run_streams(
    registry: Registry,
    settings: Settings,
    sync_id: str,
    sync: Any,
    on_progress: ProgressHook | None,
) -> SyncOutcome:
    registry.start_sync(sync_id)
    outcomes: list[StreamOutcome] = []
    try:
        with ConnectionContext(
            sync.connection, registry=registry, settings=settings, on_progress=on_progress
        ) as conn:
            auth_error = _refresh(conn)
            for run in sync.streams:
                if auth_error is not None:
                    outcome = StreamOutcome(run.stream, "failed", error=auth_error)
                    registry.update_stream_run(
                        sync_id, run.stream, status="failed", error=auth_error, finished_at=_now()
                    )
                else:
                    outcome = run_stream(conn, sync_id, run.stream, sync.full_refresh)
                outcomes.append(outcome)
    except RawqueryError as exc:
        registry.finish_sync(sync_id, "failed", error=str(exc))
        raise
    finally:
        Staging.of(settings).remove(sync_id)
    ok = all(o.status == "succeeded" for o in outcomes)
    failed = [o.name for o in outcomes if o.status != "succeeded"]
    registry.finish_sync(
        sync_id,
        "succeeded" if ok else "failed",
        error=None if ok else f"streams failed: {', '.join(failed)}",
    )
    return SyncOutcome(sync_id, sync.connection, outcomes)


def _refresh(conn: ConnectionContext) -> str | None:
    """The refresh-auth step, once per sync; its error fails every stream."""
    try:
        pipeline.refresh_auth(conn.stream(conn.spec.streams[0].name))
    except RawqueryError as exc:
        return str(exc)
    return None


def run_stream(
    conn: ConnectionContext, sync_id: str, stream: str, full_refresh: bool
) -> StreamOutcome:
    """All segments of one stream, in this process; a failure is recorded, not raised."""
    registry = conn.registry
    started = time.monotonic()
    registry.update_stream_run(sync_id, stream, status="running", started_at=_now())
    ctx = conn.stream(stream)
    warnings: list[str] = []
    changes: list[str] = []
    job = pipeline.start_job(ctx, sync_id, full_refresh)
    rows = pages_done = 0
    try:
        pages = pipeline.iter_pages(ctx, job)
        next_job: pipeline.StreamJob | None = job
        while next_job is not None:
            staged = pipeline.fetch_and_stage(ctx, next_job, pages)
            warnings += staged.warnings
            changes += staged.schema_changes
            next_job = pipeline.commit_segment(ctx, staged)
            rows += _rows(staged)
            pages_done += staged.pages
            registry.update_stream_run(sync_id, stream, rows=rows, pages=pages_done)
    except Exception as exc:  # a bug must fail one stream, not the others
        message = (
            str(exc)
            if isinstance(exc, RawqueryError)
            else (f"internal error: {type(exc).__name__}: {exc}")
        )
        _abandon(ctx, job)
        return _failed(
            conn, sync_id, stream, conn.redactor.redact(message), started, warnings, changes
        )
    cursor = ctx.sink.committed_state(conn.name, stream).get("rq.cursor") or None
    outcome = StreamOutcome(
        stream,
        "succeeded",
        rows,
        pages_done,
        time.monotonic() - started,
        cursor=cursor,
        warnings=_merge_warnings(warnings),
        schema_changes=changes,
    )
    registry.update_stream_run(
        sync_id,
        stream,
        status="succeeded",
        rows=rows,
        pages=pages_done,
        cursor=cursor,
        warnings=outcome.warnings,
        schema_changes=changes,
        finished_at=_now(),
        seconds=outcome.seconds,
    )
    return outcome


def _abandon(ctx: StreamContext, job: pipeline.StreamJob) -> None:
    try:
        pipeline.abandon(ctx, job)
    except Exception as exc:  # cleaning up must not hide the stream's own error
        log.warning("cleanup after failed stream %s failed: %s", job.stream, exc)


def _rows(staged: pipeline.StagedSegment) -> int:
    return next((t.rows for t in staged.tables if t.parent is None), 0)


def _failed(
    conn: ConnectionContext,
    sync_id: str,
    stream: str,
    error: str,
    started: float,
    warnings: list[str],
    changes: list[str],
) -> StreamOutcome:
    seconds = time.monotonic() - started
    conn.registry.update_stream_run(
        sync_id,
        stream,
        status="failed",
        error=error,
        warnings=_merge_warnings(warnings),
        schema_changes=changes,
        finished_at=_now(),
        seconds=seconds,
    )
    return StreamOutcome(
        stream,
        "failed",
        seconds=seconds,
        error=error,
        warnings=_merge_warnings(warnings),
        schema_changes=changes,
    )


def _merge_warnings(lines: list[str]) -> list[str]:
    """Warnings repeat once per segment: keep each distinct line once, in order."""
    return list(dict.fromkeys(lines))


def spawn_background(sync_id: str, settings: Settings) -> int:
    """`--no-wait` in embedded mode: run the sync in a detached process; returns its pid."""
    logs = settings.home_dir / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{sync_id}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rawquery_workers.run_sync", sync_id],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=os.environ.copy(),
        )
    return proc.pid


def _now() -> datetime:
    return datetime.now(UTC)
