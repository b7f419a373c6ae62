"""What the Celery tasks do, between `pipeline`'s steps: leases, hand-offs and bookkeeping.

A distributed sync holds the connection's lease (`redis_keys.sync_lock_key`) from
`start` until its last stream finishes. The lease's value names the sync, so whichever
worker runs a step of that sync renews it, and the one that finishes the last stream
releases it; if every worker dies, nobody renews and it runs out after LEASE_SECONDS.

Each hand-off that a redelivered task could repeat is made once with a Redis marker
(`SET NX`): enqueuing segment k+1, finishing a stream. A step that keeps killing its
worker is failed after MAX_ATTEMPTS deliveries instead of looping forever.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from rawquery_workers import pipeline
from rawquery_workers.context import ConnectionContext, redis_client
from rawquery_workers.errors import ConflictError, RawqueryError
from rawquery_workers.locks import COMPARE_AND_DELETE, RENEW_LEASE, LockOwner
from rawquery_workers.redis_keys import connection_prefix, sync_lock_key
from rawquery_workers.registry import Registry, open_registry
from rawquery_workers.settings import get_settings

LEASE_SECONDS = 600
MARKER_SECONDS = 7 * 24 * 3600
MAX_ATTEMPTS = 5
ContextFor = Callable[[str], ConnectionContext]


def _redis() -> redis.Redis:
    return redis_client(get_settings())


def _key(connection: str, sync_id: str, *parts: object) -> str:
    return connection_prefix(connection) + ":".join(["sync", sync_id, *map(str, parts)])


# --- the connection lease ---------------------------------------------------------------------


def acquire_lease(connection: str, sync_id: str) -> bool:
    owner = dataclasses.replace(LockOwner.current(sync_id), token=sync_id)
    key = sync_lock_key(connection)
    return bool(_redis().set(key, owner.to_json(), nx=True, ex=LEASE_SECONDS))


def lease_owner(connection: str) -> LockOwner | None:
    raw = _redis().get(sync_lock_key(connection))
    return LockOwner.from_json(raw) if raw else None


def renew_lease(connection: str, sync_id: str) -> None:
    """Extend the lease of `sync_id`; ConflictError if another sync holds it now."""
    client, key = _redis(), sync_lock_key(connection)
    raw = client.get(key)
    owner = LockOwner.from_json(raw) if raw else None
    if owner is None or owner.token != sync_id:
        raise ConflictError(
            f"sync {sync_id} lost the lease of connection '{connection}' "
            "(it ran out or another sync took it); run the sync again"
        )
    client.eval(RENEW_LEASE, 1, key, raw, LEASE_SECONDS * 1000, "0")


def release_lease(connection: str, sync_id: str) -> None:
    client, key = _redis(), sync_lock_key(connection)
    raw = client.get(key)
    owner = LockOwner.from_json(raw) if raw else None
    if owner is not None and owner.token == sync_id:
        client.eval(COMPARE_AND_DELETE, 1, key, raw)


def _once(key: str) -> bool:
    """True the first time it is called for `key` (across all workers)."""
    return bool(_redis().set(key, "1", nx=True, ex=MARKER_SECONDS))


def count_attempt(job: pipeline.StreamJob, step: str) -> int:
    key = _key(job.connection, job.sync_id, job.stream, job.segment, step, "attempts")
    client = _redis()
    attempts = int(client.incr(key))
    client.expire(key, MARKER_SECONDS)
    return attempts


# --- the steps --------------------------------------------------------------------------------


def start(sync_id: str, context_for: ContextFor, enqueue: Callable[[dict[str, Any]], None]) -> None:
    """Lock the connection, refresh auth once, and start every stream's first segment."""
    registry = open_registry()
    sync = registry.get_sync(sync_id)
    if not acquire_lease(sync.connection, sync_id):
        owner = lease_owner(sync.connection)
        who = f" ({owner.describe()})" if owner else ""
        registry.finish_sync(sync_id, "failed", error=f"another sync was running{who}")
        return
    registry.start_sync(sync_id)
    try:
        conn = context_for(sync.connection)
        pipeline.refresh_auth(conn.stream(sync.streams[0].stream))
    except RawqueryError as exc:
        for run in sync.streams:
            fail_stream(
                registry, pipeline.StreamJob(sync.connection, sync_id, run.stream), str(exc)
            )
        return
    for run in sync.streams:
        ctx = conn.stream(run.stream)
        job = pipeline.start_job(ctx, sync_id, sync.full_refresh)
        registry.update_stream_run(sync_id, run.stream, status="running", started_at=_now())
        enqueue(job.to_dict())


def prepare(context_for: ContextFor, job: pipeline.StreamJob) -> None:
    """The refresh-auth step of a segment: renew the lease, make sure auth is usable."""
    renew_lease(job.connection, job.sync_id)
    pipeline.ensure_auth(context_for(job.connection).stream(job.stream))


def fetch(context_for: ContextFor, job: pipeline.StreamJob) -> dict[str, Any]:
    ctx = context_for(job.connection).stream(job.stream)
    fetched = pipeline.fetch_segment(ctx, job)
    name = f"{job.stream}-{job.segment}"
    path = ctx.staging.write_records(job.sync_id, name, fetched.records)
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
    fetched = pipeline.FetchedSegment(job, records, ref["pages"], ref["next_state"])
    return pipeline.stage_segment(ctx, fetched).to_dict()


def commit(
    context_for: ContextFor, data: dict[str, Any], enqueue: Callable[[dict[str, Any]], None]
) -> None:
    """Commit a segment, then hand on the next one or finish the stream (each once)."""
    staged = pipeline.StagedSegment.from_dict(data)
    job = staged.job
    renew_lease(job.connection, job.sync_id)
    conn = context_for(job.connection)
    ctx = conn.stream(job.stream)
    next_job = pipeline.commit_segment(ctx, staged)
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
    _stream_finished(registry, job)


def _stream_finished(registry: Registry, job: pipeline.StreamJob) -> None:
    client = _redis()
    done_key = _key(job.connection, job.sync_id, "finished")
    added = client.sadd(done_key, job.stream)
    client.expire(done_key, MARKER_SECONDS)
    sync = registry.get_sync(job.sync_id)
    if not added or client.scard(done_key) < len(sync.streams):
        return
    sync = registry.get_sync(job.sync_id)
    failed = [r.stream for r in sync.streams if r.status != "succeeded"]
    registry.finish_sync(
        job.sync_id,
        "failed" if failed else "succeeded",
        error=f"streams failed: {', '.join(failed)}" if failed else None,
    )
    context_staging_remove(job.sync_id)
    release_lease(job.connection, job.sync_id)


def context_staging_remove(sync_id: str) -> None:
    from rawquery_workers.staging import Staging

    Staging(get_settings().effective_warehouse).remove(sync_id)


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
