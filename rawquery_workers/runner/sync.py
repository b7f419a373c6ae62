"""Running a planned sync (`connections.plan_sync`): each stream's segments in turn.

Embedded mode runs the steps of `pipeline.py` here, in the calling process; distributed
mode hands the same steps to Celery (`tasks.py`). Either way the registry records a sync
and one run per stream, and one sync of a connection runs at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rawquery_workers.errors import ConflictError, RawqueryError
from rawquery_workers.observe.logs import log_context
from rawquery_workers.registry import Registry, open_registry
from rawquery_workers.runner import pipeline
from rawquery_workers.runner.context import ConnectionContext, StreamContext
from rawquery_workers.runner.progress import ProgressHook
from rawquery_workers.runner.runs import (
    StreamOutcome,
    StreamRun,
    end_sync_if_last,
    failure_text,
    outcome_of,
    parent_failure,
)
from rawquery_workers.runner.staging import Staging
from rawquery_workers.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    sync_id: str
    connection: str
    streams: list[StreamOutcome]
    maintained: tuple[str, ...] = ()  # what maintenance did after the streams (one per table)

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
    """Run a planned sync in this process (embedded mode), holding the connection's lease
    (the same lock a distributed sync takes)."""
    from rawquery_workers.runner.locks import embedded_lease

    settings = settings or get_settings()
    registry = registry or open_registry(settings)
    sync = registry.get_sync(sync_id)
    with contextlib.ExitStack() as held:
        held.enter_context(log_context(connection=sync.connection, sync_id=sync_id))
        try:
            held.enter_context(embedded_lease(registry, sync.connection, sync_id))
        except ConflictError:
            registry.finish_sync(sync_id, "failed", error="another sync of this connection runs")
            raise
        return _run_streams(registry, settings, sync_id, sync, on_progress)


def _run_streams(
    registry: Registry,
    settings: Settings,
    sync_id: str,
    sync: Any,
    on_progress: ProgressHook | None,
) -> SyncOutcome:
    registry.start_sync(sync_id)
    maintained: list[str] = []
    try:
        with ConnectionContext(
            sync.connection,
            registry=registry,
            settings=settings,
            on_progress=on_progress,
            spec=sync.spec,  # the spec it was planned with, whatever `update` does meanwhile
        ) as conn:
            auth_error = _refresh(conn)
            failed: set[str] = set()
            for run in sync.streams:  # parents come before their children (plan_sync)
                error = auth_error or parent_failure(conn.spec.stream(run.stream), failed)
                if error is not None:
                    StreamRun(registry, sync_id, run.stream).fail(error)
                    failed.add(run.stream)
                elif run_stream(conn, sync_id, run.stream, sync.full_refresh).status != "succeeded":
                    failed.add(run.stream)
            for run in sync.streams:  # the lease still held; tables past the threshold only
                if run.stream not in failed:
                    reports = pipeline.maintain_stream_tables(conn.stream(run.stream))
                    maintained += [r.summary() for r in reports]
    except RawqueryError as exc:
        registry.finish_sync(sync_id, "failed", error=str(exc))
        raise
    finally:
        Staging.of(settings).remove(sync_id)
    end_sync_if_last(registry, sync_id)
    streams = [outcome_of(r) for r in registry.get_sync(sync_id).streams]
    return SyncOutcome(sync_id, sync.connection, streams, tuple(maintained))


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
    with log_context(stream=stream):
        return _run_stream(conn, sync_id, stream, full_refresh)


def _run_stream(
    conn: ConnectionContext, sync_id: str, stream: str, full_refresh: bool
) -> StreamOutcome:
    run = StreamRun(conn.registry, sync_id, stream)
    run.start()
    ctx = conn.stream(stream)
    job = pipeline.start_job(ctx, sync_id, full_refresh)
    try:
        pages = pipeline.iter_pages(ctx, job)
        next_job: pipeline.StreamJob | None = job
        while next_job is not None:
            staged = pipeline.fetch_and_stage(ctx, next_job, pages)
            next_job = pipeline.commit_segment(ctx, staged)
            done = next_job or pipeline.finished_job(staged)
            run.record(done.rows, done.pages, staged.warnings, staged.schema_changes)
    except Exception as exc:  # a bug must fail one stream, not the others
        _abandon(ctx, job)
        run.fail(conn.redactor.redact(failure_text(exc)))
    else:
        run.succeed(ctx.sink.committed_state(conn.name, stream).get("rq.cursor") or None)
    return outcome_of(run.record_now())


def _abandon(ctx: StreamContext, job: pipeline.StreamJob) -> None:
    try:
        pipeline.abandon(ctx, job)
    except Exception as exc:  # cleaning up must not hide the stream's own error
        log.warning("cleanup after failed stream %s failed: %s", job.stream, exc)


def spawn_background(sync_id: str, settings: Settings) -> int:
    """`--no-wait` in embedded mode: run the sync in a detached process; returns its pid."""
    logs = settings.home_dir / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{sync_id}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rawquery_workers.runner.run_sync", sync_id],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=os.environ.copy(),
        )
    return proc.pid


def _now() -> datetime:
    return datetime.now(UTC)
