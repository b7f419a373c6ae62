"""Holding a connection's sync lease in embedded mode, and one OAuth2 refresh at a time.

    embedded_lease(...)  an embedded sync: the connection's lease in the registry (the one
                         lock of every mode, `registry/leases.py`), renewed from a thread
    single_flight(...)   distributed mode: redis-py's `Lock` around an OAuth2 token refresh
    LockOwner            who holds a lock (sync id, host, pid, start time), stored in it

A distributed sync's lease is taken by `distributed/lease.py`, in the same registry row. In
embedded mode no OAuth2 lock is taken here: a sync holds its connection's lease, and an
authenticator built without a `refresh_lock` serialises its own refreshes with an
in-process lock (`auth.oauth2`).

Both store their `LockOwner`, so a refused caller can say who is in the way
(`sync_conflict`), and both let go by themselves when the holder dies: the lease when its
embedded process is gone from this host (recognised at once) or nobody renews it for its
ttl, the Redis lock when nobody renews it for `ttl` seconds. `single_flight` raises
`RawqueryError` while Redis is unreachable and never raises on release (an unreleased
lock runs out by itself).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock
from sqlalchemy.exc import SQLAlchemyError

from rawquery_workers.distributed.redis_keys import redis_address
from rawquery_workers.errors import ConflictError, RawqueryError
from rawquery_workers.registry import Registry
from rawquery_workers.registry.leases import (
    EMBEDDED_LEASE_SECONDS,
    Lease,
    LockOwner,
    sync_conflict,
)
from rawquery_workers.settings import get_settings

__all__ = ["LockOwner", "embedded_lease", "single_flight", "sync_conflict"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@contextlib.contextmanager
def embedded_lease(registry: Registry, connection: str, sync_id: str) -> Iterator[Lease]:
    """Hold the connection's lease (registry/leases.py, the lock of every mode) while the
    block runs an embedded sync, renewing it from a thread every third of its ttl.
    ConflictError (naming the holder) when another sync holds it."""
    ttl = min(EMBEDDED_LEASE_SECONDS, get_settings().lease_seconds)
    owner = LockOwner.current(sync_id)
    lease = registry.leases.acquire(connection, sync_id, mode="embedded", ttl=ttl, owner=owner)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            try:
                if not registry.leases.renew(connection, sync_id, ttl):
                    log.error("sync %s lost the lease of %s (paused past it?)", sync_id, connection)
                    return  # its commits are fenced from here on (sink.state.foreign_commit)
            except SQLAlchemyError as exc:
                log.warning("renewing the lease of %s failed (%s); retrying", connection, exc)

    thread = threading.Thread(target=renew, name=f"lease:{connection}", daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join(timeout=ttl)
        try:
            registry.leases.release(connection, sync_id)
        except SQLAlchemyError as exc:  # it runs out by itself within its ttl
            log.warning("releasing the lease of %s failed (%s)", connection, exc)


@contextlib.contextmanager
def single_flight(
    client: redis.Redis,
    key: str,
    ttl: float = 30.0,
    *,
    wait: float | None = None,
    sync_id: str | None = None,
) -> Iterator[Lock]:
    """Run the block while holding `key`, waiting up to `wait` seconds for it (OAuth2 refresh).

    The lock is redis-py's `Lock` whose token is our `LockOwner` JSON, so a refused caller
    can name the holder. The default wait is `ttl + 1`: long enough for a dead holder's lock
    to run out. A thread renews the lock every `ttl / 3` while the block runs, so a slow
    token request keeps it. After the wait, the caller should re-read what the other holder
    produced (a fresh token) before doing the work itself. Raises ConflictError when the
    wait runs out, RawqueryError when Redis is unreachable.
    """
    limit = ttl + 1.0 if wait is None else wait
    token = LockOwner.current(sync_id).to_json()
    # thread_local=False: the renewing thread must see the token this thread acquired with.
    lock = client.lock(key, timeout=ttl, blocking_timeout=limit, thread_local=False)
    if not _redis_call(client, f"acquire lock {key}", lambda: lock.acquire(token=token)):
        raw = _redis_call(client, f"read the owner of lock {key}", lambda: client.get(key))
        owner = LockOwner.from_json(raw) if isinstance(raw, bytes | str) and raw else None
        held_by = f" by {owner.describe()}" if owner else ""
        raise ConflictError(f"waited {limit:g}s for {key}, still held{held_by}; try again shortly")
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(lock, stop), name=f"lock:{key}", daemon=True)
    renewer.start()
    try:
        yield lock
    finally:
        stop.set()
        renewer.join(timeout=ttl)
        _release(lock)


def _renew(lock: Lock, stop: threading.Event) -> None:
    """Reset `lock`'s ttl every third of it until `stop`; an outage is ridden out while the
    ttl still runs, and renewing stops once the lock is lost."""
    ttl = float(lock.timeout or 0)
    runs_until = time.monotonic() + ttl
    while not stop.wait(ttl / 3):
        sent = time.monotonic()
        try:
            if not _extend(lock, reclaim=sent < runs_until):
                log.error("lock %s lost: its ttl ran out or another holder took it", lock.name)
                return
        except redis.RedisError as exc:
            log.warning("renewing lock %s failed (%s); retrying", lock.name, exc)
            continue
        runs_until = sent + ttl


def _extend(lock: Lock, *, reclaim: bool) -> bool:
    """One renewal; False when the lock is lost. With `reclaim` (our ttl still runs by our
    own clock) a key that Redis lost (restarted empty) is put back: nobody can hold it yet."""
    try:
        return lock.reacquire()
    except LockNotOwnedError:
        token = lock.local.token
        if reclaim and token is not None and lock.do_acquire(token):
            log.warning("lock %s re-created after Redis lost it (restart?)", lock.name)
            return True
        return False


def _release(lock: Lock) -> None:
    """Let go of `lock`; never raises (an unreleased lock runs out by itself)."""
    try:
        lock.release()
    except LockNotOwnedError:
        log.warning("lock %s was no longer ours when released (its ttl ran out)", lock.name)
    except redis.RedisError as exc:
        log.warning("could not release lock %s (%s); it expires within its ttl", lock.name, exc)


def _redis_call(client: redis.Redis, doing: str, command: Callable[[], T]) -> T:
    try:
        return command()
    except redis.RedisError as exc:
        raise RawqueryError(
            f"could not {doing}: Redis at {redis_address(client)} failed ({exc}); "
            "check that Redis is running and RAWQUERY_REDIS_URL points at it"
        ) from exc
