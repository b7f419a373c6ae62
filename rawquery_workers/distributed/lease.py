"""Distributed mode: a sync holds its connection's lease (the registry row of
`registry/leases.py`, the same lock an embedded sync takes) from `claim` (in the CLI or
beat, before anything is enqueued) until its last stream finishes.

Whichever worker runs a step of the sync renews the lease (`heartbeat`, every
HEARTBEAT_SECONDS while a step runs), and the one that finishes the last stream releases
it. If every worker dies, nobody renews it and it runs out after RAWQUERY_LEASE_SECONDS;
the next claim then marks the sync lost. The lease is in the registry database, not in
Redis: a Redis restart or outage delays steps but never frees or forges a lease. A step
of a sync whose lease was taken stops before committing (`renew_lease`), and a commit
already under way when that happens is refused by the sink's fence.

Only the registry and `locks` are needed here: `rq connections sync --no-wait` claims a
lease without loading the pipeline.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import redis
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from rawquery_workers.errors import ConflictError, RawqueryError
from rawquery_workers.registry import Registry, open_registry
from rawquery_workers.registry.db import read_tx, syncs
from rawquery_workers.registry.leases import LockOwner
from rawquery_workers.settings import get_settings

HEARTBEAT_SECONDS = 5.0
# Redis (or the broker through it) went away: the task is retried, not its stream failed.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
LOST_ERROR = (
    "lost: no worker renewed this sync's lease (every worker died, or the lease ran out); "
    "a later sync picks up from its last committed segment"
)


def lease_seconds() -> float:
    return get_settings().lease_seconds


def lease_owner(connection: str) -> LockOwner | None:
    held = open_registry().leases.holder(connection)
    return held.owner if held is not None else None


def claim(registry: Registry, connection: str, sync_id: str) -> None:
    """Take the connection's lease for a planned sync before it is enqueued.

    ConflictError (naming the running sync and how to follow it) when another sync holds
    it; the planned sync is then recorded as refused. Syncs the registry still shows as
    queued or running while nobody holds the lease were lost: they are marked failed so
    that status tells the truth.
    """
    owner = LockOwner.current(sync_id)
    try:
        registry.leases.acquire(
            connection, sync_id, mode="distributed", ttl=lease_seconds(), owner=owner
        )
    except ConflictError as error:
        registry.finish_sync(sync_id, "failed", error=str(error))
        raise
    for stale_id in _unfinished_syncs(registry, connection):
        if stale_id != sync_id:
            registry.finish_sync(stale_id, "failed", error=LOST_ERROR)


def _unfinished_syncs(registry: Registry, connection: str) -> list[str]:
    query = select(syncs.c.id).where(
        syncs.c.connection == connection, syncs.c.status.in_(("queued", "running"))
    )
    with read_tx(registry.engine) as conn:
        return [row[0] for row in conn.execute(query)]


def renew_lease(connection: str, sync_id: str) -> None:
    """Extend the lease of `sync_id`; ConflictError when it is not the holder any more."""
    if not open_registry().leases.renew(connection, sync_id, lease_seconds()):
        raise ConflictError(
            f"sync {sync_id} lost the lease of connection '{connection}' "
            "(it ran out or another sync took it); run the sync again"
        )


def check_lost(registry: Registry, sync_id: str, grace: float, seen: dict[str, float]) -> None:
    """For a follower: mark the sync failed once its lease has been gone or expired for
    `grace` seconds while the registry still shows it unfinished. `seen` is the caller's
    memory between calls."""
    sync = registry.get_sync(sync_id)
    held = registry.leases.holder(sync.connection)
    alive = held is not None and held.sync_id == sync_id and held.expires_at > time.time()
    if sync.status not in ("queued", "running") or alive:
        seen.pop(sync_id, None)
        return
    first = seen.setdefault(sync_id, time.monotonic())
    if time.monotonic() - first >= grace:
        registry.finish_sync(sync_id, "failed", error=LOST_ERROR)


def release_lease(connection: str, sync_id: str) -> None:
    open_registry().leases.release(connection, sync_id)


@contextlib.contextmanager
def heartbeat(connection: str, sync_id: str) -> Iterator[None]:
    """Renew the sync's lease now and every HEARTBEAT_SECONDS (at most a third of the
    lease) while the block runs."""
    renew_lease(connection, sync_id)
    stop = threading.Event()
    every = min(HEARTBEAT_SECONDS, lease_seconds() / 3)

    def beat() -> None:
        while not stop.wait(every):
            # An outage is ridden out; a lost lease is caught by the commit's own renewal.
            with contextlib.suppress(RawqueryError, SQLAlchemyError):
                renew_lease(connection, sync_id)

    thread = threading.Thread(target=beat, name=f"heartbeat:{sync_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
