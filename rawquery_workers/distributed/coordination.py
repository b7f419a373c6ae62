"""What the Celery tasks do, between `pipeline`'s steps: hand-offs and bookkeeping.

Each step renews the connection's lease (`lease.py`: claimed before the sync is enqueued),
and the step that finishes the last stream releases it.

While a segment is fetched, its worker keeps the stream run's `progress` (pages, records,
rate-limit waits) current in the registry for `rq connections sync --wait` (`progress.py`).

Each hand-off that a redelivered task could repeat is made once with a Redis marker
(`SET NX`): enqueuing segment k+1. Whether every stream has finished is read from the
registry, which outlives Redis. A step that keeps killing its worker is failed after
MAX_ATTEMPTS deliveries instead of looping forever.

Test hook: RAWQUERY_TEST_CRASH_AT=PHASE:SEGMENT (`faults.py`) kills the worker process at
`fetch`, `transform` (records read back, nothing staged yet), `staged` (data files
written, the step not yet acked), `before-commit` or `after-commit` of that segment, once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError

from rawquery_workers.distributed.lease import release_lease, renew_lease
from rawquery_workers.distributed.redis_keys import (
    incarnation,
    redis_client,
    segment_enqueued_key,
    step_attempts_key,
)
from rawquery_workers.errors import ConflictError, NotFoundError, RawqueryError
from rawquery_workers.faults import crash_point, pause_point
from rawquery_workers.registry import Registry, open_registry
from rawquery_workers.registry.records import SyncRecord
from rawquery_workers.runner import pipeline
from rawquery_workers.runner.context import ConnectionContext
from rawquery_workers.runner.progress import ProgressWriter, Stored
from rawquery_workers.runner.runs import StreamRun, end_sync_if_last, parent_failure
from rawquery_workers.runner.staging import Staging
from rawquery_workers.settings import get_settings
from rawquery_workers.spec.models import Spec

MARKER_SECONDS = 7 * 24 * 3600
MAX_ATTEMPTS = 5
ContextFor = Callable[[str, str], ConnectionContext]  # (connection, sync id)
log = logging.getLogger(__name__)


def _redis() -> redis.Redis:
    return redis_client(get_settings())


def _once(key: str) -> bool:
    """True the first time it is called for `key` (across all workers)."""
    return bool(_redis().set(key, "1", nx=True, ex=MARKER_SECONDS))


def still_running(job: pipeline.StreamJob) -> bool:
    """Whether the job's sync may still take steps: it exists and has not ended. A sync
    marked lost, cancelled by `delete --force`, or deleted with its connection ends here."""
    try:
        status = open_registry().get_sync(job.sync_id).status
    except NotFoundError:
        status = "deleted"
    if status in ("queued", "running"):
        return True
    log.info("dropped a step of sync %s (%s): the sync is %s", job.sync_id, job.stream, status)
    return False


def sync_exists(job: pipeline.StreamJob) -> bool:
    """Whether the job's sync is still in the registry (its connection was not deleted)."""
    try:
        open_registry().get_sync(job.sync_id)
    except NotFoundError:
        return False
    return True


def step_starts(job: pipeline.StreamJob, worker: str) -> bool:
    """Record that `worker` runs the job's next step; False for a delivery of an epoch the
    stream has left (it was taken over: registry/takeover.py), which is dropped."""
    if open_registry().steps.started(job.sync_id, job.stream, job.epoch, worker):
        return True
    log.warning(
        "dropped a late delivery for stream %s of sync %s (epoch %d): another worker took "
        "the stream over",
        job.stream,
        job.sync_id,
        job.epoch,
    )
    return False


def step_is_current(job: pipeline.StreamJob) -> bool:
    """Whether the job's epoch is still the stream's (a step that ran on while its stream
    was taken over must not record its failure over the new chain)."""
    return open_registry().steps.started_epoch(job.sync_id, job.stream) in (None, job.epoch)


def count_attempt(job: pipeline.StreamJob, step: str) -> int:
    key = step_attempts_key(job.connection, job.sync_id, job.stream, job.segment, step)
    client = _redis()
    attempts = int(client.incr(key))
    client.expire(key, MARKER_SECONDS)
    return attempts


# --- the steps --------------------------------------------------------------------------------


def start(
    sync_id: str,
    context_for: ContextFor,
    enqueue: Callable[[dict[str, Any]], None],
    worker: str | None = None,
) -> None:
    """Check the lease, refresh auth once, and start every stream's first segment. A start
    delivered again (its worker died, or Redis went away half-way) starts the streams the
    first delivery did not get to, and no other. While it runs, the registry names its
    `worker`, whose death has the reapers deliver it again (registry/takeover.py)."""
    registry = open_registry()
    sync = registry.get_sync(sync_id)
    if sync.status not in ("queued", "running"):
        return  # a redelivered start of a sync that has ended (or was refused)
    if worker is not None:
        registry.steps.starting(sync_id, worker)
    try:
        _start(registry, sync, context_for, enqueue)
    finally:
        if worker is not None:
            registry.steps.starting(sync_id, None)


def _start(
    registry: Registry,
    sync: SyncRecord,
    context_for: ContextFor,
    enqueue: Callable[[dict[str, Any]], None],
) -> None:
    sync_id = sync.id
    try:
        renew_lease(sync.connection, sync_id)
    except ConflictError as exc:
        registry.finish_sync(sync_id, "failed", error=str(exc))
        return
    first = sync.status == "queued"
    if first:
        registry.start_sync(sync_id)
    try:
        conn = context_for(sync.connection, sync_id)
        if first:
            pipeline.refresh_auth(conn.stream(sync.streams[0].stream))
    except RawqueryError as exc:
        for run in sync.streams:
            job = pipeline.StreamJob(sync.connection, sync_id, run.stream)
            fail_stream(registry, job, conn_redact(context_for, sync.connection, sync_id, str(exc)))
        return
    in_sync = {run.stream for run in sync.streams}
    for number, run in enumerate(sync.streams):
        parent = conn.spec.stream(run.stream).parent
        if parent is None or parent.stream not in in_sync:  # children start when it ends
            _start_stream(conn, sync_id, run.stream, sync.full_refresh, enqueue)
            pause_point("start", number)


def _start_stream(
    conn: ConnectionContext,
    sync_id: str,
    stream: str,
    full_refresh: bool,
    enqueue: Callable[[dict[str, Any]], None],
) -> None:
    """Start a stream's first segment, once: the registry's queued -> running is the one
    transition that may (a redelivered step may ask again; a hand-on lost on the way is
    found by the reapers, registry/takeover.py)."""
    job = pipeline.start_job(conn.stream(stream), sync_id, full_refresh)
    data = job.to_dict()
    # Recorded before the claim: a worker dying between the claim and the enqueue leaves a
    # step the reapers see without its message, and hand on again.
    broker = incarnation(_redis())
    conn.registry.steps.handed_on(sync_id, stream, data, job.epoch, only_if_new=True, broker=broker)
    if conn.registry.claim_stream_start(sync_id, stream):
        enqueue(data)


def hand_on(
    registry: Registry, job: pipeline.StreamJob, enqueue: Callable[[dict[str, Any]], None]
) -> None:
    """Enqueue a segment's chain, recorded first so that a reaper can take the stream over
    if the worker running it dies (registry/takeover.py)."""
    data = job.to_dict()
    broker = incarnation(_redis())
    registry.steps.handed_on(job.sync_id, job.stream, data, job.epoch, broker=broker)
    enqueue(data)


def _children(spec: Spec, sync: SyncRecord, stream: str) -> list[str]:
    """The streams of `sync` whose parent is `stream` and that have not started."""
    return [
        run.stream
        for run in sync.streams
        if run.status == "queued"
        and (parent := spec.stream(run.stream).parent) is not None
        and parent.stream == stream
    ]


def conn_redact(context_for: ContextFor, connection: str, sync_id: str, message: str) -> str:
    try:
        return context_for(connection, sync_id).redactor.redact(message)
    except Exception:  # the context itself may be what failed to build
        return message


def prepare(context_for: ContextFor, job: pipeline.StreamJob) -> None:
    """The refresh-auth step of a segment: renew the lease, make sure auth is usable."""
    renew_lease(job.connection, job.sync_id)
    pipeline.ensure_auth(context_for(job.connection, job.sync_id).stream(job.stream))


def fetch(context_for: ContextFor, job: pipeline.StreamJob) -> dict[str, Any]:
    """Fetch a segment's pages into staging, keeping the stream run's `progress` current
    (`progress.ProgressWriter`: per page, throttled; a redelivered fetch starts its segment's
    counts again)."""
    conn = context_for(job.connection, job.sync_id)
    registry = conn.registry
    writer = ProgressWriter(
        StreamRun(registry, job.sync_id, job.stream).record_now().progress,
        job.segment,
        lambda p: _write_progress(registry, job, p),
    )
    ctx = conn.stream(job.stream, on_progress=writer)
    fetched = pipeline.fetch_segment(ctx, job)
    crash_point("fetch", job.segment)
    registry.update_stream_run(
        job.sync_id, job.stream, pages=job.pages + fetched.pages, progress=writer.stored()
    )
    return {
        "job": job.to_dict(),
        "pages_file": fetched.pages_file,
        "records": fetched.records,
        "pages": fetched.pages,
        "next_state": fetched.next_state,
        "warnings": fetched.warnings,
    }


def _write_progress(registry: Registry, job: pipeline.StreamJob, progress: Stored) -> None:
    """Progress is for people watching: a write that fails is logged, never fails a fetch."""
    try:
        registry.update_stream_run(job.sync_id, job.stream, progress=progress)
    except (SQLAlchemyError, RawqueryError) as exc:
        log.warning("progress of %s/%s not recorded: %s", job.sync_id, job.stream, exc)


def transform(context_for: ContextFor, ref: dict[str, Any]) -> dict[str, Any]:
    job = pipeline.StreamJob.from_dict(ref["job"])
    ctx = context_for(job.connection, job.sync_id).stream(job.stream)
    crash_point("transform", job.segment)
    fetched = pipeline.FetchedSegment(
        job,
        ref["pages_file"],
        ref.get("records", 0),
        ref["pages"],
        ref["next_state"],
        ref.get("warnings", []),
    )
    staged = pipeline.stage_segment(ctx, fetched)
    crash_point("staged", job.segment)
    return staged.to_dict()


def commit(
    context_for: ContextFor, data: dict[str, Any], enqueue: Callable[[dict[str, Any]], None]
) -> None:
    """Commit a segment, then hand on the next one or finish the stream (each once)."""
    staged = pipeline.StagedSegment.from_dict(data)
    job = staged.job
    renew_lease(job.connection, job.sync_id)
    conn = context_for(job.connection, job.sync_id)
    ctx = conn.stream(job.stream)
    crash_point("before-commit", job.segment)
    next_job = pipeline.commit_segment(ctx, staged)
    crash_point("after-commit", job.segment)
    run = StreamRun(conn.registry, job.sync_id, job.stream)
    done = next_job or pipeline.finished_job(staged)
    run.record(done.rows, done.pages, staged.warnings, staged.schema_changes)
    if next_job is not None:
        marker = segment_enqueued_key(
            job.connection, job.sync_id, job.stream, next_job.segment, job.epoch
        )
        if _once(marker):
            hand_on(conn.registry, next_job, enqueue)
        return
    run.succeed(ctx.sink.committed_state(job.connection, job.stream).get("rq.cursor") or None)
    conn.registry.steps.finished(job.sync_id, job.stream)
    sync = conn.registry.get_sync(job.sync_id)
    for child in _children(conn.spec, sync, job.stream):  # the parent's table is final now
        _start_stream(conn, job.sync_id, child, sync.full_refresh, enqueue)
    for report in pipeline.maintain_stream_tables(ctx):  # still under the sync's lease
        log.info("sync %s: %s", job.sync_id, report.summary())
    _stream_finished(conn.registry, job)


def fail_stream(registry: Registry, job: pipeline.StreamJob, error: str) -> None:
    """Fail a stream, and the child streams of this sync waiting for it."""
    StreamRun(registry, job.sync_id, job.stream).fail(error)
    registry.steps.finished(job.sync_id, job.stream)
    spec: Spec | None = None
    with contextlib.suppress(Exception):  # cleaning up must not hide the stream's own error
        spec_then = registry.get_sync(job.sync_id).spec
        conn = ConnectionContext(job.connection, registry=registry, spec=spec_then)
        with conn:
            spec = conn.spec
            pipeline.abandon(conn.stream(job.stream), job)
    if spec is not None:
        for child in _children(spec, registry.get_sync(job.sync_id), job.stream):
            message = parent_failure(spec.stream(child), {job.stream}) or error
            fail_stream(registry, dataclasses.replace(job, stream=child), message)
    _stream_finished(registry, job)


def _stream_finished(registry: Registry, job: pipeline.StreamJob) -> None:
    """After a stream's run is final: the last stream to finish ends the sync."""
    if end_sync_if_last(registry, job.sync_id):
        Staging.of(get_settings()).remove(job.sync_id)
        release_lease(job.connection, job.sync_id)
