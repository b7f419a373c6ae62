"""Distributed mode: one sync of a connection at a time, as a lease in Redis.

A distributed sync holds the connection's lease (`redis_keys.sync_lock_key`) from `claim`
(in the CLI or beat, before anything is enqueued) until its last stream finishes. The
lease's value names the sync, so whichever worker runs a step of that sync renews it
(`heartbeat`, every HEARTBEAT_SECONDS while a step runs), and the one that finishes the last
stream releases it; if every worker dies, nobody renews and it runs out after
LEASE_SECONDS. A lease that vanished (Redis restarted, nothing persisted) is re-created by
the next heartbeat of its sync unless another sync claimed it first, in which case the old
sync's steps stop before committing anything more.

Only Redis, the registry and `locks` are needed here: `rq connections sync --no-wait`
claims a lease without loading the pipeline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator

import redis
from sqlalchemy import select

from rawquery_workers.distributed.redis_keys import redis_client, sync_lock_key
from rawquery_workers.errors import ConflictError, RawqueryError
from rawquery_workers.registry import Registry, open_registry
from rawquery_workers.registry.db import read_tx, syncs
from rawquery_workers.runner.locks import LockOwner, sync_conflict
from rawquery_workers.settings import get_settings

LEASE_SECONDS = 600
HEARTBEAT_SECONDS = 5.0
# Redis (or the broker through it) went away: the task is retried, not its stream failed.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
LOST_ERROR = (
    "lost: no worker held this sync's lease (Redis restarted or every worker died); "
    "a later sync picks up from its last committed segment"
)

# KEYS[1]  the lease key
# ARGV[1]  the value the sync stored when it claimed the lease (owner JSON)
# ARGV[2]  the new lease, in milliseconds
# Returns  1 when extended; 0 when the key is gone or holds another sync's value
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1]  the lease key
# ARGV[1]  the value the sync stored when it claimed the lease
# Returns  1 when deleted; 0 when the key is gone or holds another sync's value (left alone)
COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _redis() -> redis.Redis:
    return redis_client(get_settings())


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
    if raw is None or owner is None or owner.token != sync_id:
        raise ConflictError(
            f"sync {sync_id} lost the lease of connection '{connection}' "
            "(it ran out or another sync took it); run the sync again"
        )
    client.eval(RENEW_LEASE, 1, key, raw, LEASE_SECONDS * 1000)


def check_lost(registry: Registry, sync_id: str, grace: float, seen: dict[str, float]) -> None:
    """For a follower: mark the sync failed once its lease has been gone (no heartbeat
    re-created it) for `grace` seconds while the registry still shows it unfinished.
    `seen` is the caller's memory between calls."""
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
    if raw is not None and owner is not None and owner.token == sync_id:
        client.eval(COMPARE_AND_DELETE, 1, key, raw)


@contextlib.contextmanager
def heartbeat(connection: str, sync_id: str) -> Iterator[None]:
    """Renew the sync's lease now and every HEARTBEAT_SECONDS while the block runs."""
    renew_lease(connection, sync_id)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            # An outage is ridden out; a lost lease is caught by the commit's own renewal.
            with contextlib.suppress(RawqueryError, *REDIS_ERRORS):
                renew_lease(connection, sync_id)

    thread = threading.Thread(target=beat, name=f"heartbeat:{sync_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
