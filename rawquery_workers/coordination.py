"""What the Celery tasks do, between `pipeline`'s steps: leases, hand-offs and bookkeeping.

A distributed sync holds the connection's lease (`redis_keys.sync_lock_key`) from `claim`
(in the CLI or beat, before anything is enqueued) until its last stream finishes. The
lease's value names the sync, so whichever worker runs a step of that sync renews it
(`heartbeat`, every HEARTBEAT_SECONDS while a step runs), and the one that finishes the last
stream releases it; if every worker dies, nobody renews and it runs out after
LEASE_SECONDS. A lease that vanished (Redis restarted, nothing persisted) is re-created by
the next heartbeat of its sync unless another sync claimed it first, in which case the old
sync's steps stop before committing anything more.

Each hand-off that a redelivered task could repeat is made once with a Redis marker
(`SET NX`): enqueuing segment k+1. Whether every stream has finished is read from the
registry, which outlives Redis. A step that keeps killing its worker is failed after
MAX_ATTEMPTS deliveries instead of looping forever.

Test hook: RAWQUERY_TEST_CRASH_AT=PHASE:SEGMENT (PHASE `fetch`, `transform` (records
read back, nothing staged yet), `staged` (data files written, the step not yet acked),
`before-commit` or `after-commit`; several points separated by commas) makes the worker
process kill itself (SIGKILL) at that point of that segment, once: the first process to
get there creates a marker file `crashed-PHASE-SEGMENT` under RAWQUERY_HOME (atomically),
later deliveries see it and go on. The crash-resume tests get deterministic crashes (and
disarm points by creating their markers). Never set it in production.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis

from rawquery_workers import pipeline
from rawquery_workers.context import ConnectionContext, redis_client
from rawquery_workers.errors import ConflictError, RawqueryError
from rawquery_workers.locks import COMPARE_AND_DELETE, RENEW_LEASE, LockOwner, sync_conflict
from rawquery_workers.redis_keys import connection_prefix, sync_lock_key
from rawquery_workers.registry import Registry, open_registry
from rawquery_workers.settings import get_settings
from rawquery_workers.staging import Staging

LEASE_SECONDS = 600
HEARTBEAT_SECONDS = 5.0
MARKER_SECONDS = 7 * 24 * 3600
MAX_ATTEMPTS = 5
ContextFor = Callable[[str], ConnectionContext]
# Redis (or the broker through it) went away: the task is retried, not its stream failed.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)


def _redis() -> redis.Redis:
    return redis_client(get_settings())


def _key(connection: str, sync_id: str, *parts: object) -> str:
    return connection_prefix(connection) + ":".join(["sync", sync_id, *map(str, parts)])


# --- the connection lease ---------------------------------------------------------------------


def _owner_value(sync_id: str) -> str:
    return dataclasses.replace(LockOwner.current(sync_id), token=sync_id).to_json()


def acquire_lease(connection: str, sync_id: str) -> bool:
    key = sync_lock_key(connection)
    return bool(_redis().set(key, _owner_value(sync_id), nx=True, ex=LEASE_SECONDS))


def lease_owner(connection: str) -> LockOwner | None:
    raw = _redis().get(sync_lock_key(connection))
    return LockOwner.from_json(raw) if raw else None


def claim(registry: Registry, connection: str, sync_id: str) -> None:
    """Take the connection's lease for a planned sync before it is enqueued.

    ConflictError (naming the running sync and how to follow it) when another sync holds
    it; the planned sync is then recorded as refused. Syncs the registry still shows as
    queued or running while nobody holds the lease were lost (Redis restarted or every
    worker died): they are marked failed so that status tells the truth.
    """
    if not acquire_lease(connection, sync_id):
        owner = lease_owner(connection)
        error = sync_conflict(connection, owner)
        registry.finish_sync(sync_id, "failed", error=str(error))
        raise error
    for stale_id in _unfinished_syncs(registry, connection):
        if stale_id == sync_id:
            continue
        registry.finish_sync(stale_id, "failed", error=LOST_ERROR)


def _unfinished_syncs(registry: Registry, connection: str) -> list[str]:
    from sqlalchemy import select

    from rawquery_workers.registry.db import read_tx, syncs

    query = select(syncs.c.id).where(
        syncs.c.connection == connection, syncs.c.status.in_(("queued", "running"))
    )
    with read_tx(registry.engine) as conn:
        return [row[0] for row in conn.execute(query)]


def renew_lease(connection: str, sync_id: str) -> None:
    """Extend the lease of `sync_id` (re-creating it if Redis lost it); ConflictError if
    another sync holds it now."""
    client, key = _redis(), sync_lock_key(connection)
    raw = client.get(key)
    reclaim = raw is None and _unfinished(sync_id)
    if reclaim and client.set(key, _owner_value(sync_id), nx=True, ex=LEASE_SECONDS):
        return
    raw = raw or client.get(key)
    owner = LockOwner.from_json(raw) if raw else None
    if owner is None or owner.token != sync_id:
        raise ConflictError(
            f"sync {sync_id} lost the lease of connection '{connection}' "
            "(it ran out or another sync took it); run the sync again"
        )
    client.eval(RENEW_LEASE, 1, key, raw, LEASE_SECONDS * 1000, "0")


LOST_ERROR = (
    "lost: no worker held this sync's lease (Redis restarted or every worker died); "
    "a later sync picks up from its last committed segment"
)


def check_lost(registry: Registry, sync_id: str, grace: float, seen: dict[str, float]) -> None:
    """For a follower: mark the sync failed once its lease has been gone (no heartbeat
    re-created it) for `grace` seconds while the registry still shows it unfinished.
    `seen` is the caller's memory between calls."""
    import time

    sync = registry.get_sync(sync_id)
    try:
        owner = lease_owner(sync.connection)
    except REDIS_ERRORS:
        owner = None
    if sync.status not in ("queued", "running") or (owner and owner.token == sync_id):
        seen.pop(sync_id, None)
        return
    first = seen.setdefault(sync_id, time.monotonic())
    if time.monotonic() - first >= grace:
        registry.finish_sync(sync_id, "failed", error=LOST_ERROR)


def _unfinished(sync_id: str) -> bool:
    """Whether a sync may (re-)take its lease: not released here, not finished."""
    if sync_id in _released:
        return False
    return open_registry().get_sync(sync_id).status in ("queued", "running")


_released: set[str] = set()


def release_lease(connection: str, sync_id: str) -> None:
    _released.add(sync_id)
    client, key = _redis(), sync_lock_key(connection)
    raw = client.get(key)
    owner = LockOwner.from_json(raw) if raw else None
    if owner is not None and owner.token == sync_id:
        client.eval(COMPARE_AND_DELETE, 1, key, raw)


@contextlib.contextmanager
def heartbeat(job: pipeline.StreamJob) -> Iterator[None]:
    """Renew the sync's lease now and every HEARTBEAT_SECONDS while the block runs."""
    renew_lease(job.connection, job.sync_id)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            # An outage is ridden out; a lost lease is caught by the commit's own renewal.
            with contextlib.suppress(RawqueryError, *REDIS_ERRORS):
                renew_lease(job.connection, job.sync_id)

    thread = threading.Thread(target=beat, name=f"heartbeat:{job.sync_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _once(key: str) -> bool:
    """True the first time it is called for `key` (across all workers)."""
    return bool(_redis().set(key, "1", nx=True, ex=MARKER_SECONDS))


def count_attempt(job: pipeline.StreamJob, step: str) -> int:
    key = _key(job.connection, job.sync_id, job.stream, job.segment, step, "attempts")
    client = _redis()
    attempts = int(client.incr(key))
    client.expire(key, MARKER_SECONDS)
    return attempts


def crash_point(phase: str, segment: int) -> None:
    """The test hook described in the module docstring (RAWQUERY_TEST_CRASH_AT)."""
    if f"{phase}:{segment}" not in os.environ.get("RAWQUERY_TEST_CRASH_AT", "").split(","):
        return
    marker = get_settings().home_dir / f"crashed-{phase}-{segment}"
    try:
        with open(marker, "x") as out:  # one crash per point, whichever worker gets there
            out.write(str(os.getpid()))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


# --- the steps --------------------------------------------------------------------------------


def start(sync_id: str, context_for: ContextFor, enqueue: Callable[[dict[str, Any]], None]) -> None:
    """Check the lease, refresh auth once, and start every stream's first segment."""
    registry = open_registry()
    sync = registry.get_sync(sync_id)
    if sync.status != "queued":
        return  # a redelivered start of a sync already under way (or refused)
    try:
        renew_lease(sync.connection, sync_id)
    except ConflictError as exc:
        registry.finish_sync(sync_id, "failed", error=str(exc))
        return
    registry.start_sync(sync_id)
    try:
        conn = context_for(sync.connection)
        pipeline.refresh_auth(conn.stream(sync.streams[0].stream))
    except RawqueryError as exc:
        for run in sync.streams:
            job = pipeline.StreamJob(sync.connection, sync_id, run.stream)
            fail_stream(registry, job, conn_redact(context_for, sync.connection, str(exc)))
        return
    for run in sync.streams:
        ctx = conn.stream(run.stream)
        job = pipeline.start_job(ctx, sync_id, sync.full_refresh)
        registry.update_stream_run(sync_id, run.stream, status="running", started_at=_now())
        enqueue(job.to_dict())


def conn_redact(context_for: ContextFor, connection: str, message: str) -> str:
    try:
        return context_for(connection).redactor.redact(message)
    except Exception:  # the context itself may be what failed to build
        return message


def prepare(context_for: ContextFor, job: pipeline.StreamJob) -> None:
    """The refresh-auth step of a segment: renew the lease, make sure auth is usable."""
    renew_lease(job.connection, job.sync_id)
    pipeline.ensure_auth(context_for(job.connection).stream(job.stream))


def fetch(context_for: ContextFor, job: pipeline.StreamJob) -> dict[str, Any]:
    ctx = context_for(job.connection).stream(job.stream)
    fetched = pipeline.fetch_segment(ctx, job)
    crash_point("fetch", job.segment)
    name = f"{job.stream}-{job.segment}"
    path = ctx.staging.write_records(job.sync_id, name, fetched.records)
    ctx.registry.update_stream_run(job.sync_id, job.stream, pages=job.pages + fetched.pages)
    return {
        "job": job.to_dict(),
        "records_file": path,
        "pages": fetched.pages,
        "next_state": fetched.next_state,
    }


def transform(context_for: ContextFor, ref: dict[str, Any]) -> dict[str, Any]:
    job = pipeline.StreamJob.from_dict(ref["job"])
    ctx = context_for(job.connection).stream(job.stream)
    records = ctx.staging.read_records(ref["records_file"])
    crash_point("transform", job.segment)
    fetched = pipeline.FetchedSegment(job, records, ref["pages"], ref["next_state"])
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
    conn = context_for(job.connection)
    ctx = conn.stream(job.stream)
    crash_point("before-commit", job.segment)
    next_job = pipeline.commit_segment(ctx, staged)
    crash_point("after-commit", job.segment)
    registry = conn.registry
    run = _run(registry, job)
    warnings = list(dict.fromkeys([*run.warnings, *staged.warnings]))
    changes = list(dict.fromkeys([*run.schema_changes, *staged.schema_changes]))
    done_job = next_job or dataclasses.replace(
        job, rows=job.rows + _rows(staged), pages=job.pages + staged.pages
    )
    registry.update_stream_run(
        job.sync_id,
        job.stream,
        rows=done_job.rows,
        pages=done_job.pages,
        warnings=warnings,
        schema_changes=changes,
    )
    if next_job is not None:
        if _once(_key(job.connection, job.sync_id, job.stream, next_job.segment, "enqueued")):
            enqueue(next_job.to_dict())
        return
    cursor = ctx.sink.committed_state(job.connection, job.stream).get("rq.cursor") or None
    registry.update_stream_run(
        job.sync_id,
        job.stream,
        status="succeeded",
        cursor=cursor,
        finished_at=_now(),
        seconds=_seconds(run),
    )
    _stream_finished(registry, job)


def fail_stream(registry: Registry, job: pipeline.StreamJob, error: str) -> None:
    registry.update_stream_run(
        job.sync_id, job.stream, status="failed", error=error, finished_at=_now()
    )
    with contextlib.suppress(Exception):  # cleaning up must not hide the stream's own error
        conn = ConnectionContext(job.connection, registry=registry)
        with conn:
            pipeline.abandon(conn.stream(job.stream), job)
    _stream_finished(registry, job)


def _stream_finished(registry: Registry, job: pipeline.StreamJob) -> None:
    """After a stream's run is final: the last stream to finish ends the sync."""
    sync = registry.get_sync(job.sync_id)
    if sync.status not in ("queued", "running"):
        return
    if any(r.status in ("queued", "running") for r in sync.streams):
        return
    failed = [r.stream for r in sync.streams if r.status != "succeeded"]
    registry.finish_sync(
        job.sync_id,
        "failed" if failed else "succeeded",
        error=f"streams failed: {', '.join(failed)}" if failed else None,
    )
    Staging.of(get_settings()).remove(job.sync_id)
    release_lease(job.connection, job.sync_id)


def _run(registry: Registry, job: pipeline.StreamJob) -> Any:
    sync = registry.get_sync(job.sync_id)
    return next(r for r in sync.streams if r.stream == job.stream)


def _rows(staged: pipeline.StagedSegment) -> int:
    return next((t.rows for t in staged.tables if t.parent is None), 0)


def _seconds(run: Any) -> float | None:
    if run.started_at is None:
        return None
    return (_now() - run.started_at).total_seconds()


def _now() -> datetime:
    return datetime.now(UTC)
