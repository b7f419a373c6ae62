"""One sync of a connection at a time (embedded mode), and one OAuth2 refresh at a time.

    LocalFileLock       embedded mode: flock on RAWQUERY_HOME/locks/CONNECTION.sync.lock
    single_flight(...)  distributed mode: redis-py's `Lock` around an OAuth2 token refresh
    LockOwner           who holds a lock (sync id, host, pid, start time), stored in it

A distributed sync's own lock is the lease in `lease.py`. In embedded mode no OAuth2 lock
is taken here: a sync holds its connection's LocalFileLock, and an authenticator built
without a `refresh_lock` serialises its own refreshes with an in-process lock
(`auth.oauth2`).

Both locks here store their `LockOwner`, so a refused caller can say who is in the way
(`sync_conflict`), and both let go by themselves when the holder dies: the file lock when
its process exits (the kernel drops flock locks, SIGKILL included), the Redis lock when
nobody renews it for `ttl` seconds. `single_flight` raises `RawqueryError` while Redis is
unreachable and never raises on release (an unreleased lock runs out by itself).
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
from typing import TypeVar

import orjson
import redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from rawquery_workers.distributed.redis_keys import redis_address
from rawquery_workers.errors import ConflictError, RawqueryError

log = logging.getLogger(__name__)
T = TypeVar("T")


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


class LocalFileLock:
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
        """True between a successful `acquire` and `release`."""
        return self._fd is not None

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lock; keep trying up to `wait` seconds (0: try once). True when taken."""
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
        """Let go; does nothing if not held."""
        fd, self._fd, self._owner = self._fd, None, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def owner_info(self) -> LockOwner | None:
        """Who holds the lock now (us included), or None when it is free."""
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
        """Raise ConflictError unless we hold the lock (call before committing)."""
        if self._fd is None:
            raise ConflictError(f"lock {self.path} is not held by this process")

    def __enter__(self) -> LocalFileLock:
        """Take the lock at once or raise ConflictError naming the holder."""
        if not self.acquire():
            owner = self.owner_info()
            held_by = f" by {owner.describe()}" if owner else ""
            raise ConflictError(f"lock {self.key} is held{held_by}; try again once it is done")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

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
