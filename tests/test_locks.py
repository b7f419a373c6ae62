"""The locks: the OAuth2 single flight on redis-py's Lock (private redis-server) and the
embedded sync lock on a flock file, with holders that are other processes, killed with
SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.lock import Lock

from rawquery_workers.distributed.redis_keys import oauth_lock_key
from rawquery_workers.errors import ConflictError, RawqueryError
from rawquery_workers.runner.locks import LocalFileLock, LockOwner, single_flight, sync_conflict
from tests.support.redis_server import RedisServer

KEY = oauth_lock_key("shop")

# A holder in another process: takes the lock, says so, then blocks until killed.
HOLD_REDIS_LOCK = """
import sys, redis
from rawquery_workers.runner.locks import single_flight
with single_flight(redis.Redis.from_url(sys.argv[1]), sys.argv[2], ttl=1, sync_id="child"):
    print("held", flush=True)
    sys.stdin.read()
"""
HOLD_FILE_LOCK = """
import sys
from rawquery_workers.runner.locks import LocalFileLock
lock = LocalFileLock(sys.argv[1], sync_id="child")
assert lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        process.kill()
        process.wait()


def _hold_in_subprocess(
    holders: list[subprocess.Popen[str]], script: str, *args: str
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    holders.append(process)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"  # blocks until the child holds it
    return process


def _sigkill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


# --- single_flight: redis-py's Lock -------------------------------------------------------


@pytest.mark.redis
def test_single_flight_runs_one_block_at_a_time(client: redis.Redis) -> None:
    events: list[str] = []
    first_in, first_may_leave, second_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with single_flight(client, KEY, ttl=5):
            events.append("first in")
            first_in.set()
            first_may_leave.wait(10)
            events.append("first out")

    def second() -> None:
        with single_flight(client, KEY, ttl=5, wait=10):
            events.append("second in")
            second_in.set()

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert first_in.wait(10)
    threads.append(threading.Thread(target=second))
    threads[1].start()
    assert not second_in.wait(0.3)  # still shut out while the first block runs
    first_may_leave.set()
    for thread in threads:
        thread.join(10)
    assert events == ["first in", "first out", "second in"]
    assert not client.exists(KEY)


@pytest.mark.redis
def test_single_flight_gives_up_after_its_wait_and_says_who_holds_it(
    client: redis.Redis,
) -> None:
    with single_flight(client, KEY, ttl=5, sync_id="abc123") as lock:
        assert isinstance(lock, Lock) and lock.owned()
        owner = LockOwner.from_json(client.get(KEY) or b"")
        assert owner is not None
        assert (owner.sync_id, owner.host, owner.pid) == (
            "abc123",
            socket.gethostname(),
            os.getpid(),
        )
        assert owner.started_at == pytest.approx(time.time(), abs=5)
        started = time.monotonic()
        refused = pytest.raises(ConflictError, match="waited 0.2s .* held by sync abc123 started ")
        with refused, single_flight(client, KEY, ttl=5, wait=0.2):
            pass
        assert time.monotonic() - started < 2
    with pytest.raises(KeyError), single_flight(client, KEY):
        raise KeyError("boom")
    assert not client.exists(KEY)  # released on the way out of a failing block


@pytest.mark.redis
def test_renewal_keeps_the_lock_well_past_its_ttl(client: redis.Redis) -> None:
    with single_flight(client, KEY, ttl=1, sync_id="abc123"):
        started = time.monotonic()
        with pytest.raises(ConflictError), single_flight(client, KEY, ttl=1, wait=2.5):
            pass
        assert time.monotonic() - started >= 2.4  # redis-py polls every 0.1 s
        assert 0 < client.pttl(KEY) <= 1000
    assert not client.exists(KEY)


@pytest.mark.redis
def test_a_killed_holder_lets_go_within_its_ttl(
    redis_server: RedisServer, client: redis.Redis, holders: list[subprocess.Popen[str]]
) -> None:
    process = _hold_in_subprocess(holders, HOLD_REDIS_LOCK, redis_server.url, KEY)
    owner = LockOwner.from_json(client.get(KEY) or b"")
    assert owner is not None and (owner.sync_id, owner.pid) == ("child", process.pid)
    _sigkill(process)
    killed = time.monotonic()
    with single_flight(client, KEY, ttl=1, wait=5.0):
        # The ttl (at most 1 s left at the kill) plus redis-py's 0.1 s poll step, with room
        # for a loaded 2-core CI machine; a lock that never expired would wait out the 5 s.
        assert time.monotonic() - killed < 1.0 + 1.0


@pytest.mark.redis
def test_release_never_deletes_someone_elses_lock(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with single_flight(client, KEY, ttl=30):
        client.set(KEY, "someone else")  # as if our ttl ran out and another holder came
    assert client.get(KEY) == b"someone else"
    assert "no longer ours when released" in caplog.text


@pytest.mark.redis
def test_renewal_notices_when_another_holder_took_over(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with single_flight(client, KEY, ttl=0.3):
        client.set(KEY, "someone else")
        deadline = time.monotonic() + 3.0
        while "lost" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)  # bounded wait for the renewal thread
        assert "another holder took it" in caplog.text
    assert client.get(KEY) == b"someone else"


@pytest.mark.redis
def test_lock_survives_a_redis_restart(redis_server: RedisServer, client: redis.Redis) -> None:
    with single_flight(client, KEY, ttl=3, sync_id="abc123"):
        redis_server.restart()  # every key is gone
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not client.exists(KEY):
            time.sleep(0.02)  # bounded wait for the renewal thread to put the key back
        owner = LockOwner.from_json(client.get(KEY) or b"")
        assert owner is not None and owner.sync_id == "abc123"
        with pytest.raises(ConflictError), single_flight(client, KEY, wait=0):
            pass
    assert not client.exists(KEY)


@pytest.mark.redis
def test_single_flight_fails_clearly_while_redis_is_down(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    redis_server.stop()
    failed = pytest.raises(
        RawqueryError,
        match=f"could not acquire lock {KEY}: Redis at {redis_server.url}.*RAWQUERY_REDIS_URL",
    )
    with failed, single_flight(client, KEY):
        pass


# --- LocalFileLock ----------------------------------------------------------------------------


def test_file_lock_is_exclusive_and_says_who_holds_it(rq_home: Path) -> None:
    first = LocalFileLock.for_connection("shop", sync_id="abc123")
    second = LocalFileLock.for_connection("shop")
    assert first.path == rq_home / "locks" / "shop.sync.lock"
    assert first.acquire()
    assert not second.acquire()
    owner = second.owner_info()
    assert owner is not None and (owner.sync_id, owner.pid) == ("abc123", os.getpid())
    assert "already syncing (sync abc123" in str(sync_conflict("shop", owner))
    first.release()
    assert second.owner_info() is None
    assert second.acquire()
    second.check()
    second.release()
    with pytest.raises(ConflictError):
        second.check()


def test_file_lock_held_by_another_process_is_freed_by_its_death(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "locks" / "shop.sync.lock"
    process = _hold_in_subprocess(holders, HOLD_FILE_LOCK, str(path))
    lock = LocalFileLock(path, sync_id="parent")
    assert not lock.acquire(wait=0.2)
    owner = lock.owner_info()
    assert owner is not None and (owner.sync_id, owner.pid) == ("child", process.pid)
    with pytest.raises(ConflictError, match="held by sync child"), lock:
        pass
    _sigkill(process)
    assert lock.owner_info() is None  # the dead child's note is stale: nothing holds the file
    assert lock.acquire()
    owner = lock.owner_info()
    assert owner is not None and owner.sync_id == "parent"
    lock.release()


def test_lock_owner_round_trips_through_json() -> None:
    owner = LockOwner.current("abc123")
    assert LockOwner.from_json(owner.to_json()) == owner
    assert LockOwner.from_json(b"") is None
    assert LockOwner.from_json("{torn") is None
    assert "token" not in repr(owner)
    assert owner.describe().startswith("sync abc123 started ")


def test_sync_conflict_names_the_running_sync_and_how_to_follow_it() -> None:
    message = str(sync_conflict("shop", LockOwner.current("abc123")))
    assert message.startswith("connection shop is already syncing (sync abc123 started ")
    assert f"on {socket.gethostname()}/{os.getpid()})" in message
    assert message.endswith("follow it with `rq connections status shop`")
    assert str(sync_conflict("shop", None)).startswith("connection shop is already syncing; ")
