"""The reaper: in every worker's main process, a thread that beats for the worker and takes
over the streams of workers that stopped beating (registry/takeover.py says how).

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

from rawquery_workers.errors import RawqueryError
from rawquery_workers.registry import open_registry
from rawquery_workers.registry.takeover import BEAT_SECONDS, DEAD_AFTER

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
    taken = []
    abandoned = [s for s in steps.abandoned(DEAD_AFTER) if s.worker != node]
    for step in abandoned:
        job = steps.take_over(step)
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
    return taken
