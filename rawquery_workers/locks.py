"""One sync of a connection at a time, and one OAuth2 refresh at a time.

    ConnectionLock          what the pipeline and the CLI rely on (a Protocol)
    ├── RedisLeaseLock      distributed mode: a Redis key with a lease, renewed by a thread
    └── LocalFileLock       embedded mode: flock on RAWQUERY_HOME/locks/CONNECTION.sync.lock
    single_flight(...)      blocking, bounded: wrap an OAuth2 token refresh in it

Both locks store who holds them (`LockOwner`: sync id, host, pid, start time), so a refused
sync can say who is in the way (`sync_conflict`). Both let go by themselves when the holder
dies: the file lock when its process exits (the kernel drops flock locks, SIGKILL included),
the lease when nobody renews it for `ttl` seconds.

Lease lock and Redis outages: acquire/owner_info raise `RawqueryError` while Redis is
unreachable; release never raises (an unreleased lease runs out by itself). The renewal
thread rides out an outage: if Redis comes back *empty* (restarted without persistence)
while our lease is still running by our own clock, it re-creates the key, since nobody else
can legitimately hold it yet. If the lease ran out, or someone else holds the key, the lock
is *lost*: `check()` raises `ConflictError`, and the holder should stop before committing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TypeVar

import orjson
import redis

from rawquery_workers.errors import ConflictError, RawqueryError
from rawquery_workers.redis_keys import redis_address

if TYPE_CHECKING:
    from redis.commands.core import Script

log = logging.getLogger(__name__)
T = TypeVar("T")

# KEYS[1]  the lock key
# ARGV[1]  the value we stored when acquiring (owner JSON with a random token)
# Returns  1 when deleted; 0 when the key is gone or holds someone else's value (left alone)
COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1]  the lock key
# ARGV[1]  the value we stored when acquiring
# ARGV[2]  the new lease, in milliseconds
# ARGV[3]  '1' to re-create a missing key: our lease is still running by our own clock, so
#          only a Redis restart can have dropped it and nobody else may hold it yet
# Returns  1 renewed; 2 re-created; 0 lost (expired, or someone else's value is there)
RENEW_LEASE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if current == false and ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""


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
            data = orjson.loads(text)
            return cls(
                sync_id=data.get("sync_id"),
                host=str(data["host"]),
                pid=int(data["pid"]),
                started_at=float(data["started_at"]),
                token=str(data.get("token", "")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None

    def describe(self) -> str:
        """`sync abc123 started 12:01:07 UTC on host/4242` (the date too if not today)."""
        started = datetime.fromtimestamp(self.started_at, UTC)
        same_day = started.date() == datetime.now(UTC).date()
        when = started.strftime("%H:%M:%S UTC" if same_day else "%Y-%m-%d %H:%M UTC")
        who = f"sync {self.sync_id}" if self.sync_id else "a sync"
        return f"{who} started {when} on {self.host}/{self.pid}"


def sync_conflict(connection: str, owner: LockOwner | None) -> ConflictError:
    """The error for a sync refused because another one of the same connection runs."""
    held_by = f" ({owner.describe()})" if owner else ""
    return ConflictError(
        f"connection {connection} is already syncing{held_by}; "
        f"follow it with `rq connections status {connection}`"
    )


class ConnectionLock(Protocol):
    """A non-reentrant lock with a visible owner; both implementations below fit it."""

    @property
    def held(self) -> bool:
        """True between a successful `acquire` and `release`, unless the lock was lost."""
        ...

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lock; keep trying up to `wait` seconds (0: try once). True when taken."""
        ...

    def release(self) -> None:
        """Let go; does nothing if not held; never releases someone else's lock."""
        ...

    def owner_info(self) -> LockOwner | None:
        """Who holds the lock now (us included), or None when it is free."""
        ...

    def check(self) -> None:
        """Raise ConflictError unless we still hold the lock (call before committing)."""
        ...


def _poll(attempt: Callable[[], bool], wait: float) -> bool:
    """Call `attempt` until it returns True or `wait` seconds have passed (at least once)."""
    deadline = time.monotonic() + max(0.0, wait)
    delay = 0.01
    while True:
        if attempt():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        # Waiting on another holder (possibly another host): nothing to be notified by.
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.25)


class _LockContext:
    """`with lock:` takes the lock at once or raises ConflictError naming the holder."""

    key: str

    def __enter__(self: _Lock) -> _Lock:
        if not self.acquire():
            owner = self.owner_info()
            held_by = f" by {owner.describe()}" if owner else ""
            raise ConflictError(f"lock {self.key} is held{held_by}; try again once it is done")
        return self

    def __exit__(
        self: _Lock,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _Lock(ConnectionLock, Protocol):
    key: str


class RedisLeaseLock(_LockContext):
    """A lease on a Redis key (`SET NX PX`), renewed by a daemon thread while held.

    The stored value is the owner's JSON; release and renewal act only when the key still
    holds exactly our value (Lua compare-and-delete / compare-and-pexpire). A holder that
    dies stops renewing, and the key expires within `ttl` seconds.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        ttl: float = 30.0,
        renew_every: float = 10.0,
        *,
        sync_id: str | None = None,
    ) -> None:
        if not 0 < renew_every < ttl:
            raise ValueError(f"renew_every ({renew_every}) must be > 0 and below ttl ({ttl})")
        self.key = key
        self.ttl = ttl
        self.renew_every = renew_every
        self.sync_id = sync_id
        self._client = client
        self._delete: Script = client.register_script(COMPARE_AND_DELETE)
        self._renew: Script = client.register_script(RENEW_LEASE)
        self._owner: LockOwner | None = None
        self._value = ""
        self._lease_ends = 0.0  # time.monotonic() by which the lease surely ran out
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._owner is not None and not self._lost.is_set()

    @property
    def lost(self) -> bool:
        """True once renewal found the lease gone or taken over while we thought we held it."""
        return self._lost.is_set()

    def acquire(self, wait: float = 0.0) -> bool:
        if self._owner is not None:
            raise RuntimeError(f"lock {self.key} is already held by this object")
        owner = LockOwner.current(self.sync_id)
        value = owner.to_json()

        def attempt() -> bool:
            sent = time.monotonic()
            taken = self._call(
                "acquire", lambda: self._client.set(self.key, value, nx=True, px=self._ms)
            )
            if taken:
                self._lease_ends = sent + self.ttl
            return bool(taken)

        if not _poll(attempt, wait):
            return False
        self._owner, self._value = owner, value
        self._lost.clear()
        self._stop = threading.Event()
        self._renewer = threading.Thread(
            target=self._renew_loop, args=(self._stop,), name=f"lease:{self.key}", daemon=True
        )
        self._renewer.start()
        return True

    def release(self) -> None:
        if self._owner is None:
            return
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=self.ttl)
        value, self._owner, self._renewer = self._value, None, None
        try:
            deleted = self._delete(keys=[self.key], args=[value])
        except redis.RedisError as exc:
            log.warning(
                "could not release lock %s (%s); it expires within its lease", self.key, exc
            )
            return
        if not deleted:
            log.warning("lock %s was no longer ours when released (lease ran out)", self.key)

    def owner_info(self) -> LockOwner | None:
        raw = self._call("read the owner of", lambda: self._client.get(self.key))
        return LockOwner.from_json(raw) if isinstance(raw, bytes | str) and raw else None

    def check(self) -> None:
        if self._lost.is_set():
            raise ConflictError(
                f"lock {self.key} was lost (its lease ran out or another holder took it); "
                "this sync stopped before committing more, run it again"
            )
        if self._owner is None:
            raise ConflictError(f"lock {self.key} is not held by this process")

    @property
    def _ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def _call(self, doing: str, command: Callable[[], T]) -> T:
        try:
            return command()
        except redis.RedisError as exc:
            raise RawqueryError(
                f"could not {doing} lock {self.key}: Redis at {redis_address(self._client)} "
                f"failed ({exc}); check that Redis is running and RAWQUERY_REDIS_URL points at it"
            ) from exc

    def _renew_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.renew_every):
            if not self._renew_once():
                return

    def _renew_once(self) -> bool:
        """One renewal; False when the lease is lost and renewing should stop."""
        sent = time.monotonic()
        reclaim = "1" if sent < self._lease_ends else "0"
        try:
            result = self._renew(keys=[self.key], args=[self._value, self._ms, reclaim])
        except redis.RedisError as exc:
            if time.monotonic() < self._lease_ends:
                log.warning("renewing lock %s failed (%s); retrying", self.key, exc)
                return True
            log.error("lock %s lost: Redis unreachable for longer than the lease", self.key)
            self._lost.set()
            return False
        if result == 0:
            log.error("lock %s lost: its lease ran out or another holder took it", self.key)
            self._lost.set()
            return False
        if result == 2:
            log.warning("lock %s re-created after Redis lost it (restart?)", self.key)
        self._lease_ends = sent + self.ttl
        return True


class LocalFileLock(_LockContext):
    """Embedded mode: `flock` on a file; the kernel frees it when the holding process dies.

    The file holds the owner's JSON while locked and is emptied on release (never deleted:
    deleting a lock file lets two processes lock two different inodes). A child forked while
    the lock is held shares it; it is freed when the last process holding it exits.
    """

    def __init__(self, path: str | os.PathLike[str], *, sync_id: str | None = None) -> None:
        self.path = Path(path)
        self.key = str(self.path)
        self.sync_id = sync_id
        self._fd: int | None = None
        self._owner: LockOwner | None = None

    @classmethod
    def for_connection(
        cls, connection: str, *, sync_id: str | None = None, home: Path | None = None
    ) -> LocalFileLock:
        """The sync lock of `connection` under RAWQUERY_HOME/locks/."""
        if home is None:
            from rawquery_workers.settings import get_settings

            home = get_settings().home_dir
        return cls(home / "locks" / f"{connection}.sync.lock", sync_id=sync_id)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: float = 0.0) -> bool:
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        fd = self._open()
        if not _poll(lambda: self._try_flock(fd, fcntl.LOCK_EX), wait):
            os.close(fd)
            return False
        owner = LockOwner.current(self.sync_id)
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner.to_json().encode(), 0)
        self._fd, self._owner = fd, owner
        return True

    def release(self) -> None:
        fd, self._fd, self._owner = self._fd, None, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def owner_info(self) -> LockOwner | None:
        if self._owner is not None:
            return self._owner
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            content = self._read(fd)
            if not content:
                return None  # released cleanly (or being taken right now)
            # Content left over by a holder that died is stale: look whether it is locked.
            if self._try_flock(fd, fcntl.LOCK_SH):
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            return LockOwner.from_json(content) or LockOwner(None, "?", 0, 0.0)
        finally:
            os.close(fd)

    def check(self) -> None:
        if self._fd is None:
            raise ConflictError(f"lock {self.path} is not held by this process")

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise RawqueryError(
                f"cannot open lock file {self.path}: {exc.strerror}; "
                "check that RAWQUERY_HOME is writable"
            ) from exc

    @staticmethod
    def _try_flock(fd: int, mode: int) -> bool:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    @staticmethod
    def _read(fd: int) -> bytes:
        chunks = []
        offset = 0
        while chunk := os.pread(fd, 4096, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)


@contextlib.contextmanager
def single_flight(
    client: redis.Redis,
    key: str,
    ttl: float = 30.0,
    *,
    wait: float | None = None,
    sync_id: str | None = None,
) -> Iterator[RedisLeaseLock]:
    """Run the block while holding `key`, waiting up to `wait` seconds for it (OAuth2 refresh).

    The default wait is `ttl + 1`: long enough for a dead holder's lease to run out. After
    the wait, the caller should re-read what the other holder produced (a fresh token)
    before doing the work itself. Raises ConflictError when the wait runs out.
    """
    limit = ttl + 1.0 if wait is None else wait
    lock = RedisLeaseLock(client, key, ttl=ttl, renew_every=ttl / 3, sync_id=sync_id)
    if not lock.acquire(wait=limit):
        owner = lock.owner_info()
        held_by = f" by {owner.describe()}" if owner else ""
        raise ConflictError(f"waited {limit:g}s for {key}, still held{held_by}; try again shortly")
    try:
        yield lock
    finally:
        lock.release()
