"""Distributed mode: thin task wrappers on `celery_app.app` (the work is in `coordination`
and `pipeline`).

    rq.start_sync(sync_id)     lease the connection, refresh auth once, start each stream
    per stream and segment:    rq.refresh_auth | rq.fetch | rq.transform | rq.commit
                               (rq.commit enqueues the next segment or finishes the stream)

Messages carry ids and references only: connection, sync id, stream, paginator state
(scrubbed of secrets, `Redactor.scrub_state`) and staged file paths. Never credentials,
never records. Task results are neither stored nor logged.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from celery import chain, current_task, signals
from celery.app import trace
from kombu.exceptions import OperationalError

from rawquery_workers.distributed import (
    coordination,
    lease,
    observability,  # noqa: F401  (imported for the Celery signals it connects)
    reaper,
)
from rawquery_workers.distributed.celery_app import START_SYNC
from rawquery_workers.distributed.celery_app import app as app  # `celery -A` finds it here
from rawquery_workers.errors import RawqueryError
from rawquery_workers.registry import open_registry
from rawquery_workers.runner.context import ConnectionContext
from rawquery_workers.runner.pipeline import StreamJob
from rawquery_workers.runner.runs import failure_text

# Celery logs each task's return value at INFO ("Task rq.fetch[ID] succeeded in 0.2s: {...}").
# Ours hold what was read from the API (paginator state, staged file paths): a worker logs
# that a task succeeded and how long it took, never what it returned. The template is a
# module global read when each task ends, so this holds in every pool process.
trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"

# One context per sync of a connection per worker process (HTTP pool, auth, limiter), with
# the spec the sync was planned with; rebuilt when the connection's credentials change.
_contexts: dict[tuple[str, str], ConnectionContext] = {}
_KEPT_CONTEXTS = 8


def context_for(name: str, sync_id: str) -> ConnectionContext:
    key = (name, sync_id)
    ctx = _contexts.get(key)
    if ctx is not None and ctx.registry.get_connection(name).updated_at != ctx.updated_at:
        ctx.close()
        ctx = None
    if ctx is None:
        spec = open_registry().get_sync(sync_id).spec
        ctx = _contexts[key] = ConnectionContext(name, spec=spec)
        while len(_contexts) > _KEPT_CONTEXTS:  # the oldest syncs' contexts go first
            _contexts.pop(next(iter(_contexts))).close()
    return ctx


def enqueue_segment(job: dict[str, Any]) -> None:
    chain(refresh_auth.si(job), fetch.s(), transform.s(), commit.s()).apply_async()


_RETRIED: tuple[type[BaseException], ...] = (*lease.REDIS_ERRORS, OperationalError)

# Redis or the broker went away mid-step: retry the task (after Redis returns, the step is
# idempotent) rather than fail its stream.
_RETRY = {
    "autoretry_for": _RETRIED,
    "retry_backoff": 1,
    "retry_backoff_max": 10,
    "max_retries": 30,
}


@app.task(name=START_SYNC, **_RETRY)
def start_sync(sync_id: str) -> None:
    coordination.start(sync_id, context_for, enqueue_segment, _worker_node())


@app.task(name="rq.refresh_auth", **_RETRY)
def refresh_auth(job: dict[str, Any]) -> dict[str, Any] | None:
    def prepare(j: StreamJob) -> dict[str, Any]:
        coordination.prepare(context_for, j)
        return job

    return _step(job, "refresh_auth", prepare)


@app.task(name="rq.fetch", **_RETRY)
def fetch(job: dict[str, Any] | None) -> dict[str, Any] | None:
    return _step(job, "fetch", lambda j: coordination.fetch(context_for, j))


@app.task(name="rq.transform", **_RETRY)
def transform(ref: dict[str, Any] | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return _step(ref["job"], "transform", lambda j: coordination.transform(context_for, ref))


@app.task(name="rq.commit", **_RETRY)
def commit(staged: dict[str, Any] | None) -> None:
    if staged is not None:
        run = lambda j: coordination.commit(context_for, staged, enqueue_segment)  # noqa: E731
        _step(staged["job"], "commit", run)


def _worker_node() -> str:
    """The Celery node running the current task (`worker@host`)."""
    request = current_task.request if current_task else None
    return str(getattr(request, "hostname", None) or f"local@{socket.gethostname()}")


@signals.worker_ready.connect
def _start_reaper(sender: Any = None, **_: Any) -> None:
    """In each worker's main process: beat, and take over streams of dead workers."""
    reaper.start(str(getattr(sender, "hostname", None) or socket.gethostname()), enqueue_segment)


def _step(job: dict[str, Any] | None, name: str, run: Callable[[StreamJob], Any]) -> Any:
    """Run one step under the sync's heartbeat; a failure fails its stream (recorded) and
    stops the chain (None). Redis errors propagate, so the task is retried."""
    if job is None:
        return None
    stream_job = StreamJob.from_dict(job)
    if not coordination.still_running(stream_job):
        return None  # a late delivery for a sync that ended (lost, cancelled, deleted)
    worker = _worker_node()
    if not coordination.step_starts(stream_job, worker):
        return None  # a late delivery for a stream another worker took over
    try:
        if coordination.count_attempt(stream_job, name) > coordination.MAX_ATTEMPTS:
            raise RawqueryError(
                f"step {name} of segment {stream_job.segment} was delivered "
                f"{coordination.MAX_ATTEMPTS} times without finishing "
                "(its worker died each time); giving up"
            )
        with lease.heartbeat(stream_job.connection, stream_job.sync_id):
            result = run(stream_job)
        registry = open_registry()
        registry.steps.released(stream_job.sync_id, stream_job.stream, stream_job.epoch, worker)
        return result
    except _RETRIED:
        raise
    except Exception as exc:  # a bug must fail one stream, not the worker or the others
        if not (coordination.sync_exists(stream_job) and coordination.step_is_current(stream_job)):
            return None  # deleted, or taken over, while this step ran: not ours to record
        message = failure_text(exc, name)
        message = coordination.conn_redact(
            context_for, stream_job.connection, stream_job.sync_id, message
        )
        coordination.fail_stream(open_registry(), stream_job, message)
        return None
