"""Distributed mode's Celery app, and handing a planned sync to the workers.

The task functions live in `tasks.py`, which registers them on `app`; this module does not
import them (nor the pipeline behind them), so `rq connections sync` and beat enqueue a
sync by its task name with Celery's client alone. The message is the one
`tasks.start_sync.delay(sync_id)` would send.
"""

from __future__ import annotations

from celery import Celery

from rawquery_workers.settings import get_settings

START_SYNC = "rq.start_sync"


WORKER_PUBLISH_RETRY = {
    "max_retries": 20,
    "interval_start": 0.5,
    "interval_step": 1.0,
    "interval_max": 5.0,
}
# The CLI says at once that Redis is away (nothing is queued then; see connections_cmd).
CLI_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


def make_app() -> Celery:
    url = get_settings().redis_url or "redis://127.0.0.1:6379/0"
    celery = Celery("rawquery_workers", broker=url, backend=url)
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        # A segment is bounded (RAWQUERY_SEGMENT_RECORDS), far below an hour of work; a task
        # running longer than this would be redelivered while still running.
        broker_transport_options={"visibility_timeout": 3600},
        result_backend_transport_options={"visibility_timeout": 3600},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # A worker handing a chain's next step on rides out a broker outage of about a
        # minute and a half instead of giving the step up after a second (the default).
        task_publish_retry=True,
        task_publish_retry_policy=WORKER_PUBLISH_RETRY,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        beat_scheduler="rawquery_workers.distributed.beat:RegistryScheduler",
        beat_max_loop_interval=5,
    )
    return celery


app = make_app()


def enqueue_sync(sync_id: str) -> None:
    """Hand a planned (and claimed: `lease.claim`) sync to the workers (`rq.start_sync`),
    recording the Redis incarnation it goes to (a Redis that loses its data has it
    published again: distributed/reaper.py)."""
    from rawquery_workers.distributed.redis_keys import incarnation, redis_client
    from rawquery_workers.registry import open_registry

    settings = get_settings()
    open_registry(settings).steps.published(sync_id, incarnation(redis_client(settings)))
    # A task's own `delay` adds ignore_result from the app's config; by name, say it here,
    # else Celery would subscribe to the result of a task that never stores one.
    app.send_task(
        START_SYNC,
        args=(sync_id,),
        ignore_result=app.conf.task_ignore_result,
        retry_policy=CLI_PUBLISH_RETRY,
    )
