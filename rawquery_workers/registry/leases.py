"""One sync of a connection at a time, in every mode: a lease row in the registry.

The registry database is where the CLI, embedded syncs, workers and beat already meet (it
is the Iceberg catalog's database), so the one lock of a connection's syncs lives there:
`rq_sync_leases` holds, per connection, the sync holding it, its owner (host, pid), an
expiry and a generation that grows with every new holder.

    lease = leases.acquire(connection, sync_id, mode=..., ttl=...)   # or ConflictError
    leases.renew(connection, sync_id, ttl)                           # False: not ours now
    leases.release(connection, sync_id)

A lease is free when nobody holds it, when it expired (nobody renewed it for `ttl`), when
the registry says its sync has finished, or when its holder is an embedded sync whose
process is gone from this host (a killed `rq connections sync`, recognised at once). A
sync whose lease was taken from it that way is marked failed with the reason.

The lease keeps two syncs from running; it cannot stop a process that was paused past its
expiry from waking up and trying to commit. That is what the commit fence is for
(`sink.state.foreign_commit`): a commit built on a head that another sync has committed to
since this sync started is refused by the catalog's own compare-and-swap.
Expiry uses each machine's clock: keep the fleet on NTP (seconds of skew are harmless next
to the lease lengths in docs/reliability.md).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select, update

from rawquery_workers.errors import ConflictError
from rawquery_workers.registry.db import read_tx, stream_runs, sync_leases, syncs, write_tx

# The leases this process holds for embedded syncs: one naming this pid that is not here
# was left behind (its release failed, e.g. the database was down at the end of the sync).
_HELD_HERE: set[tuple[str, str]] = set()
EMBEDDED_LEASE_SECONDS = 30.0  # renewed every third of it; a paused embedded sync loses it
LEFT = (
    "its process ({owner}) no longer runs it (the sync ended without releasing its lease); "
    "a later sync picks up from its last committed segment"
)
DIED = "its process ({owner}) is gone; a later sync picks up from its last committed segment"
EXPIRED = (
    "lost: nobody renewed its lease for {ttl:g}s (its process or every worker died, or it "
    "was paused); a later sync picks up from its last committed segment"
)


@dataclass(frozen=True, slots=True)
class LockOwner:
    """Who holds a lock. `token` tells two acquisitions by the same process apart."""

    sync_id: str | None
    host: str
    pid: int
    started_at: float  # epoch seconds
    token: str = field(default="", repr=False)

    @classmethod
    def current(cls, sync_id: str | None = None) -> LockOwner:
        return cls(sync_id, socket.gethostname(), os.getpid(), time.time(), uuid.uuid4().hex)

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> LockOwner | None:
        """The owner stored in a lock, or None when the text is not one (empty, torn)."""
        try:
            return cls.from_dict(orjson.loads(text))
        except orjson.JSONDecodeError:
            return None

    @classmethod
    def from_dict(cls, data: Any) -> LockOwner | None:
        try:
            return cls(
                sync_id=data.get("sync_id"),
                host=str(data["host"]),
                pid=int(data["pid"]),
                started_at=float(data["started_at"]),
                token=str(data.get("token", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def describe(self) -> str:
        """`sync abc123 started 12:01:07 UTC on host/4242` (the date too if not today)."""
        started = datetime.fromtimestamp(self.started_at, UTC)
        same_day = started.date() == datetime.now(UTC).date()
        when = started.strftime("%H:%M:%S UTC" if same_day else "%Y-%m-%d %H:%M UTC")
        who = f"sync {self.sync_id}" if self.sync_id else "a sync"
        return f"{who} started {when} on {self.host}/{self.pid}"

    def is_this_process(self) -> bool:
        return self.host == socket.gethostname() and self.pid == os.getpid()

    def is_gone(self) -> bool:
        """True when this owner is a process of this host that no longer exists."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's live process
            return False
        return _is_zombie(self.pid)


def _is_zombie(pid: int) -> bool:
    """A killed child not yet reaped by its parent still answers kill(0): look at /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def sync_conflict(
    connection: str, owner: LockOwner | None, holder: str | None = None
) -> ConflictError:
    """The error for a sync refused because another one of the same connection runs (or
    its tables are being maintained: `holder` is the lease's id)."""
    held_by = f" ({owner.describe()})" if owner else ""
    if holder is not None and is_maintenance(holder):
        return ConflictError(
            f"connection {connection}: its tables are being maintained{held_by}; try again "
            "when `rq maintain` is done"
        )
    return ConflictError(
        f"connection {connection} is already syncing{held_by}; "
        f"follow it with `rq connections status {connection}`"
    )


MAINTENANCE_PREFIX = "maintain-"  # the lease id of a maintenance run (no sync record)


def maintenance_id() -> str:
    return f"{MAINTENANCE_PREFIX}{uuid.uuid4().hex}"


def is_maintenance(lease_id: str) -> bool:
    return lease_id.startswith(MAINTENANCE_PREFIX)


@dataclass(frozen=True, slots=True)
class Lease:
    """A held lease. `generation` is this holder's number: it grows with every holder."""

    connection: str
    sync_id: str
    mode: str
    generation: int
    expires_at: float
    owner: LockOwner | None = None


class SyncLeases:
    """The lease rows of one registry database (`Registry.leases`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def acquire(
        self, connection: str, sync_id: str, *, mode: str, ttl: float, owner: LockOwner
    ) -> Lease:
        """Take the connection's lease for `sync_id` (or keep it, if it holds it already).
        ConflictError naming the holder when another live sync holds it."""
        now = time.time()
        with write_tx(self.engine) as conn:
            row, held, status = _lease_row(conn, connection)
            if held is not None and held.sync_id != sync_id:
                taken = _take_over_reason(held, status, now, ttl)
                if taken is None:
                    raise sync_conflict(connection, held.owner, held.sync_id)
                if status in ("queued", "running"):
                    _fail_sync(conn, held.sync_id, taken)
            generation = (row["generation"] if row else 0) + (
                0 if held and held.sync_id == sync_id else 1
            )
            values = {
                "sync_id": sync_id,
                "mode": mode,
                "owner": orjson.loads(owner.to_json()),
                "generation": generation,
                "expires_at": now + ttl,
            }
            if row is None:
                conn.execute(insert(sync_leases).values(connection=connection, **values))
            else:
                conn.execute(
                    update(sync_leases)
                    .where(sync_leases.c.connection == connection)
                    .values(**values)
                )
        if mode == "embedded":
            _HELD_HERE.add((connection, sync_id))
        return Lease(connection, sync_id, mode, generation, now + ttl, owner)

    def renew(self, connection: str, sync_id: str, ttl: float) -> bool:
        """Push the expiry of `sync_id`'s lease `ttl` seconds ahead; False when it is not
        held by `sync_id` any more (released, or taken by another sync after it expired)."""
        with write_tx(self.engine) as conn:
            done = conn.execute(
                update(sync_leases)
                .where(sync_leases.c.connection == connection)
                .where(sync_leases.c.sync_id == sync_id)
                .values(expires_at=time.time() + ttl)
            )
            return bool(done.rowcount)

    def release(self, connection: str, sync_id: str) -> bool:
        """Free the lease if `sync_id` holds it (never someone else's); True if it did."""
        _HELD_HERE.discard((connection, sync_id))
        with write_tx(self.engine) as conn:
            done = conn.execute(
                update(sync_leases)
                .where(sync_leases.c.connection == connection)
                .where(sync_leases.c.sync_id == sync_id)
                .values(sync_id=None, expires_at=0.0)
            )
            return bool(done.rowcount)

    def holder(self, connection: str) -> Lease | None:
        """The lease as held now (an expired one included), or None when it is free."""
        with read_tx(self.engine) as conn:
            return _lease_row(conn, connection)[1]

    def recognise_dead(self, connection: str, ttl: float) -> str | None:
        """Mark the holder's sync failed when its lease expired or its embedded process is
        gone (what `status` shows must be true); the reason, or None if it is alive."""
        now = time.time()
        with write_tx(self.engine) as conn:
            _, held, status = _lease_row(conn, connection)
            if held is None:
                return None
            reason = _take_over_reason(held, status, now, ttl)
            if reason is None:
                return None
            if status in ("queued", "running"):
                _fail_sync(conn, held.sync_id, reason)
            conn.execute(
                update(sync_leases)
                .where(sync_leases.c.connection == connection)
                .where(sync_leases.c.sync_id == held.sync_id)
                .values(sync_id=None, expires_at=0.0)
            )
            return reason


def _lease_row(conn: Any, connection: str) -> tuple[Any, Lease | None, str | None]:
    """The connection's lease row, the lease it holds (None: free) and its sync's status."""
    row = (
        conn.execute(select(sync_leases).where(sync_leases.c.connection == connection))
        .mappings()
        .first()
    )
    held = _held(row)
    if held is None:
        return row, None, None
    status = conn.execute(select(syncs.c.status).where(syncs.c.id == held.sync_id)).scalar()
    return row, held, status


def _held(row: Any) -> Lease | None:
    if row is None or row["sync_id"] is None:
        return None
    owner = LockOwner.from_dict(row["owner"]) if row["owner"] else None
    return Lease(
        row["connection"],
        row["sync_id"],
        row["mode"] or "",
        row["generation"],
        row["expires_at"],
        owner,
    )


def _take_over_reason(held: Lease, status: str | None, now: float, ttl: float) -> str | None:
    """Why the lease `held` may be taken now, or None while its sync (or maintenance run,
    which has no sync record: only its expiry and process tell) is alive."""
    if status not in ("queued", "running") and not is_maintenance(held.sync_id):
        return "finished"  # its release was lost: nothing to take over from
    if held.expires_at <= now:
        return EXPIRED.format(ttl=ttl)
    owner = held.owner
    if held.mode == "embedded" and owner is not None:
        if owner.is_gone():
            return DIED.format(owner=f"{owner.host}/{owner.pid}")
        if owner.is_this_process() and (held.connection, held.sync_id) not in _HELD_HERE:
            return LEFT.format(owner=f"{owner.host}/{owner.pid}")
    return None


def _fail_sync(conn: Any, sync_id: str, reason: str) -> None:
    now = datetime.now(UTC)
    conn.execute(
        update(syncs)
        .where(syncs.c.id == sync_id)
        .values(status="failed", finished_at=now, error=reason)
    )
    conn.execute(
        update(stream_runs)
        .where(stream_runs.c.sync_id == sync_id)
        .where(stream_runs.c.status.in_(("queued", "running")))
        .values(status="failed", finished_at=now, error=reason)
    )
