"""The reaper: in every worker's main process, a thread that beats for the worker and takes
over the streams of workers that stopped beating (registry/takeover.py says how).

It runs in the main process, not in the pool's children: a child killed or stuck mid-task
must not stop its worker's beat, and a whole worker (or node) that died stops beating, so
the other workers' reapers take its streams over within DEAD_AFTER plus one round.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis
from sqlalchemy.exc import SQLAlchemyError

from rawquery_workers.distributed.redis_keys import redis_client
from rawquery_workers.errors import RawqueryError
from rawquery_workers.registry import open_registry
from rawquery_workers.registry.takeover import BEAT_SECONDS, DEAD_AFTER
from rawquery_workers.settings import get_settings

QUEUE = "celery"  # Celery's default queue: every task goes there (deploy/README.md)
UNACKED = "unacked"  # kombu's Redis transport: messages delivered and not yet acked
UNACKED_INDEX = "unacked_index"  # ... and when each was delivered (a sorted set)
_MAX_SCANNED = 50_000  # a longer queue is not read: its steps are taken to be in it

log = logging.getLogger(__name__)
_started: set[str] = set()
_missing: set[tuple[str, str, int]] = set()  # steps whose message the last round missed


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
    """One round: beat, then hand on again every step abandoned by a dead worker, and every
    step whose message Redis lost (it came back empty); returns the jobs handed on."""
    steps = open_registry().steps
    steps.beat(node, os.getpid())
    taken = []
    abandoned = [s for s in steps.abandoned(DEAD_AFTER) if s.worker != node]
    queued = steps.queued_since(DEAD_AFTER)
    if queued:
        present = _jobs_in_redis()
        missing = {(s.sync_id, s.stream, s.epoch) for s in queued} - present
        # Missing in two reads a round apart: a message moving from the queue to a worker
        # between the two reads of one round is not mistaken for a lost one.
        abandoned += [s for s in queued if (s.sync_id, s.stream, s.epoch) in missing & _missing]
        _missing.clear()
        _missing.update(missing)
    for step in abandoned:
        job = steps.take_over(step)
        if job is None:
            continue  # another reaper was first
        why = f"worker {step.worker} stopped beating" if step.worker else "Redis lost its message"
        log.warning(
            "%s: taking over stream %s of sync %s at segment %s",
            why,
            step.stream,
            step.sync_id,
            job.get("segment"),
        )
        enqueue(job)
        taken.append(job)
    return taken


def _jobs_in_redis() -> set[tuple[str, str, int]]:
    """(sync id, stream, epoch) of every step message in the queue or delivered and not yet
    acknowledged. A queue too long to read counts as holding everything (nothing is taken
    over on its account)."""
    client = redis_client(get_settings())
    if client.llen(QUEUE) > _MAX_SCANNED:
        return _EVERYTHING
    messages = list(client.lrange(QUEUE, 0, -1))
    # Delivered and not acked: a worker takes a message only when it has a free slot
    # (prefetch 1, acks late), so one delivered DEAD_AFTER ago whose step never started
    # went to a worker that died holding it (Redis would hand it out again in an hour).
    tags = client.zrangebyscore(UNACKED_INDEX, time.time() - DEAD_AFTER, "+inf")
    recent = [tag for tag in tags if isinstance(tag, bytes | str)]
    for value in client.hmget(UNACKED, recent) if recent else []:
        if value is None:
            continue
        try:
            messages.append(orjson.dumps(orjson.loads(value)[0]))
        except (orjson.JSONDecodeError, IndexError, TypeError):
            continue
    return {found for raw in messages if (found := _step_of(raw)) is not None}


def _step_of(raw: bytes | str) -> tuple[str, str, int] | None:
    """The (sync id, stream, epoch) a Celery message (protocol 2, JSON) carries, if any."""
    try:
        message = orjson.loads(raw)
        body = orjson.loads(base64.b64decode(message["body"]))
        arg = body[0][0] if body and body[0] else None
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
        return None
    job = arg.get("job") if isinstance(arg, dict) and "job" in arg else arg
    if not isinstance(job, dict) or "sync_id" not in job:
        return None
    return (str(job["sync_id"]), str(job.get("stream")), int(job.get("epoch") or 0))


class _Everything(set[tuple[str, str, int]]):
    def __contains__(self, item: object) -> bool:
        return True


_EVERYTHING = _Everything()
