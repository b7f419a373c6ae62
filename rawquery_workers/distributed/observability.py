"""How worker and beat processes are observed, wired to Celery's signals (tasks.py imports
this module, so `rq worker`, `rq beat` and `celery -A rawquery_workers ...` all get it):

    setup_logging        RAWQUERY_LOG_LEVEL and RAWQUERY_LOG_FORMAT (observe/logs.py) set up
                         the process's logging instead of Celery; with no RAWQUERY_LOG_LEVEL,
                         Celery's --loglevel is the level
    task_prerun/postrun  a task's log lines carry its connection, stream and sync id
    worker_init          main process, before the pool starts: the pool's processes count
                         into files the main process adds up (observe/exposition.py)
    worker_ready         /metrics and /healthz on RAWQUERY_METRICS_PORT: healthy while Redis
                         answers
    beat_init            the same for beat: healthy while its schedule loop runs

Nothing is served unless RAWQUERY_METRICS_PORT is set.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from celery import signals

from rawquery_workers.distributed.beat import SCHEDULE_ROUNDS
from rawquery_workers.errors import RawqueryError
from rawquery_workers.observe import exposition, logs
from rawquery_workers.observe.health import Check, CheckResult
from rawquery_workers.observe.server import Metrics, ProbeServer
from rawquery_workers.settings import get_settings

log = logging.getLogger(__name__)
REDIS_TIMEOUT = 2.0  # a health probe waits this long for Redis, then says it is away
_servers: list[ProbeServer] = []  # at most one per process
_task_ids: dict[str, contextvars.Token[logs.LogIds]] = {}


def _setup_logging(loglevel: int | str | None = None, format: str | None = None, **_: Any) -> None:  # noqa: A002
    # Connected at all, this replaces Celery's own setup (it keeps none of it).
    logs.configure(default_level=loglevel or logging.INFO, text_format=format or logs.CELERY)


def _ids_of(args: tuple[Any, ...] | list[Any] | None) -> dict[str, str]:
    """The ids in a task's first argument: rq.start_sync's sync id, or the StreamJob dict
    the other steps get (transform and commit: under "job")."""
    first = args[0] if args else None
    if isinstance(first, str):
        return {"sync_id": first}
    job = first.get("job", first) if isinstance(first, dict) else None
    if not isinstance(job, dict):
        return {}
    return {k: str(job[k]) for k in ("connection", "stream", "sync_id") if job.get(k)}


def _bind_task_ids(task_id: str | None = None, args: Any = None, **_: Any) -> None:
    if task_id is not None:
        _task_ids[task_id] = logs.bind(**_ids_of(args))


def _unbind_task_ids(task_id: str | None = None, **_: Any) -> None:
    token = _task_ids.pop(task_id, None) if task_id is not None else None
    if token is not None:
        logs.unbind(token)


def _share_pool_metrics(**_: Any) -> None:
    if get_settings().metrics_port is not None:
        exposition.share_across_processes()


def redis_answers(url: str) -> Check:
    """A check that Redis at `url` answers a PING within REDIS_TIMEOUT seconds."""
    import redis

    from rawquery_workers.distributed.redis_keys import redis_address

    client = redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )
    where = redis_address(client)

    def check() -> CheckResult:
        try:
            client.ping()
        except (redis.RedisError, OSError) as exc:
            return CheckResult(False, f"Redis at {where} does not answer ({type(exc).__name__})")
        return CheckResult(True, f"Redis at {where} answers")

    return check


def serve(metrics: Metrics, checks: dict[str, Check]) -> ProbeServer | None:
    """Start this process's /metrics and /healthz server on RAWQUERY_METRICS_PORT (once)."""
    settings = get_settings()
    if settings.metrics_port is None or _servers:
        return None
    try:
        server = ProbeServer(settings.metrics_host, settings.metrics_port, metrics, checks)
    except RawqueryError as exc:  # raised from a signal, it would only be logged by Celery
        log.error("%s", exc)
        return None
    _servers.append(server.start())
    return server


def _serve_worker(**_: Any) -> None:
    serve(exposition.worker_metrics, {"redis": redis_answers(get_settings().redis_url or "")})


def _serve_beat(**_: Any) -> None:
    serve(exposition.process_metrics, {"schedule": SCHEDULE_ROUNDS})


# weak=False: the receivers are module functions, kept for the process's life anyway.
signals.setup_logging.connect(_setup_logging, weak=False)
signals.task_prerun.connect(_bind_task_ids, weak=False)
signals.task_postrun.connect(_unbind_task_ids, weak=False)
signals.worker_init.connect(_share_pool_metrics, weak=False)
signals.worker_ready.connect(_serve_worker, weak=False)
signals.beat_init.connect(_serve_beat, weak=False)
