"""The reaper: in every worker's main process, a thread that beats for the worker, takes
over the streams of workers that stopped beating, and publishes again what a Redis that
came back without its data lost (registry/takeover.py says how).

It runs in the main process, not in the pool's children: a child killed or stuck mid-task
must not stop its worker's beat, and a whole worker (or node) that died stops beating, so
the other workers' reapers take its streams over within DEAD_AFTER plus one round.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError

from rawquery_workers.distributed.redis_keys import incarnation, redis_client
from rawquery_workers.errors import RawqueryError
from rawquery_workers.registry import open_registry
from rawquery_workers.registry.takeover import BEAT_SECONDS, DEAD_AFTER, StreamSteps
from rawquery_workers.settings import get_settings

log = logging.getLogger(__name__)
_started: set[str] = set()


def start(node: str, enqueue: Callable[[dict[str, Any]], None]) -> threading.Thread | None:
    """Start the reaper of worker `node` (once per process)."""
    if node in _started:
        return None
    _started.add(node)
    thread = threading.Thread(target=_run, args=(node, enqueue), name=f"reaper:{node}", daemon=True)
    thread.start()
    return thread


def _run(node: str, enqueue: Callable[[dict[str, Any]], None]) -> None:
    stop = threading.Event()  # a daemon thread: it ends with the worker's process
    while True:
        try:
            reap_once(node, enqueue)
        except (SQLAlchemyError, RawqueryError, OSError, redis.RedisError) as exc:  # away
            log.warning("reaper of %s: %s; trying again", node, exc)
        except Exception:  # a bug here must not stop the worker's beat for good
            log.exception("reaper of %s failed; trying again", node)
        stop.wait(BEAT_SECONDS)


def reap_once(node: str, enqueue: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """One round: beat, then hand on again every step abandoned by a dead worker; returns
    the jobs handed on."""
    steps = open_registry().steps
    steps.beat(node, os.getpid())
    broker = incarnation(redis_client(get_settings()))
    taken = []
    abandoned = [s for s in steps.abandoned(DEAD_AFTER) if s.worker != node]
    for step in abandoned:
        job = steps.take_over(step, broker)
        if job is None:
            continue  # another reaper was first
        log.warning(
            "worker %s stopped beating: taking over stream %s of sync %s at segment %s",
            step.worker,
            step.stream,
            step.sync_id,
            job.get("segment"),
        )
        enqueue(job)
        taken.append(job)
    taken += _publish_lost(steps, broker, enqueue)
    for sync_id, worker in steps.abandoned_starts(DEAD_AFTER):
        if worker != node and steps.take_over_start(sync_id, worker):
            log.warning("worker %s stopped beating in the start of sync %s: starting it again",
                        worker, sync_id)  # fmt: skip
            _enqueue_start(sync_id)
    return taken


def _enqueue_start(sync_id: str) -> None:
    from rawquery_workers.distributed.celery_app import enqueue_sync

    enqueue_sync(sync_id)


def _publish_lost(
    steps: StreamSteps, broker: str, enqueue: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """Publish again what a Redis that lost its data lost: queued steps and sync starts
    recorded under another incarnation (registry/takeover.py)."""
    again = []
    for step in steps.lost_queued(broker):
        job = steps.publish_again(step, broker)
        if job is None:
            continue
        log.warning(
            "Redis lost its data (incarnation %s is gone): publishing stream %s of sync %s "
            "again at segment %s",
            step.broker,
            step.stream,
            step.sync_id,
            job.get("segment"),
        )
        enqueue(job)
        again.append(job)
    for sync_id in steps.lost_starts(broker):
        if steps.start_again(sync_id, steps.broker_of(sync_id), broker):
            log.warning("Redis lost its data: publishing the start of sync %s again", sync_id)
            _enqueue_start(sync_id)
    return again
