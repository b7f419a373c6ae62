"""The locks: the OAuth2 single flight on redis-py's Lock (private redis-server) and the
connection's sync lease (a registry row, the lock of every mode), with holders that are
other processes, killed with SIGKILL."""

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
from rawquery_workers.registry import Registry, open_registry
from rawquery_workers.runner.locks import LockOwner, single_flight, sync_conflict
from rawquery_workers.spec.credentials import Credentials
from tests.support.redis_server import RedisServer

KEY = oauth_lock_key("shop")
SHOP_SPEC = {
    "version": "1",
    "base_url": "https://api.example.com",
    "auth": {"type": "bearer"},
    "streams": [{"name": "orders", "endpoint": "/orders"}],
}

# A holder in another process: takes the lock, says so, then blocks until killed.
HOLD_REDIS_LOCK = """
import sys, redis
from rawquery_workers.runner.locks import single_flight
with single_flight(redis.Redis.from_url(sys.argv[1]), sys.argv[2], ttl=1, sync_id="child"):
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


# --- the connection's sync lease: one registry row for every mode ---------------------------

# A holder in another process: takes the lease for an embedded sync, says so, then blocks.
HOLD_EMBEDDED_LEASE = """
import sys
from rawquery_workers.registry import open_registry
from rawquery_workers.registry.leases import LockOwner
registry = open_registry()
registry.leases.acquire(
    "shop", sys.argv[1], mode="embedded", ttl=600, owner=LockOwner.current(sys.argv[1])
)
print("held", flush=True)
sys.stdin.read()
"""


def _registry_with_syncs(count: int) -> tuple[Registry, list[str]]:
    registry = open_registry()
    registry.create_connection("shop", SHOP_SPEC, Credentials(token="t"))
    return registry, [registry.create_sync("shop", ["orders"]) for _ in range(count)]


def test_the_lease_is_exclusive_says_who_holds_it_and_frees_on_release(rq_home: Path) -> None:
    registry, (first, second) = _registry_with_syncs(2)
    me = LockOwner.current(first)
    lease = registry.leases.acquire("shop", first, mode="embedded", ttl=60, owner=me)
    with pytest.raises(ConflictError, match=f"already syncing \\(sync {first}"):
        registry.leases.acquire("shop", second, mode="distributed", ttl=60, owner=me)
    assert registry.leases.renew("shop", first, 60)
    assert not registry.leases.renew("shop", second, 60)  # not the holder
    assert not registry.leases.release("shop", second)  # never someone else's
    assert registry.leases.release("shop", first)
    assert registry.leases.holder("shop") is None
    again = registry.leases.acquire("shop", second, mode="distributed", ttl=60, owner=me)
    assert again.generation == lease.generation + 1  # a new holder, a new generation


def test_an_expired_lease_is_taken_and_its_sync_marked_lost(rq_home: Path) -> None:
    registry, (first, second) = _registry_with_syncs(2)
    registry.start_sync(first)
    owner = LockOwner.current(first)
    registry.leases.acquire("shop", first, mode="distributed", ttl=0, owner=owner)  # expired

    registry.leases.acquire("shop", second, mode="embedded", ttl=60, owner=owner)

    old = registry.get_sync(first)
    assert old.status == "failed" and "nobody renewed its lease" in (old.error or "")
    assert not registry.leases.renew("shop", first, 60)  # the old sync is fenced off
    held = registry.leases.holder("shop")
    assert held is not None and held.sync_id == second


def test_an_embedded_holder_that_died_is_recognised_at_once(
    rq_home: Path, holders: list[subprocess.Popen[str]]
) -> None:
    registry, (first, second) = _registry_with_syncs(2)
    registry.start_sync(first)
    process = _hold_in_subprocess(holders, HOLD_EMBEDDED_LEASE, first)
    owner = LockOwner.current(second)
    with pytest.raises(ConflictError, match=f"/{process.pid}\\)"):
        registry.leases.acquire("shop", second, mode="embedded", ttl=60, owner=owner)
    _sigkill(process)

    registry.leases.acquire("shop", second, mode="embedded", ttl=60, owner=owner)

    dead = registry.get_sync(first)
    assert dead.status == "failed" and f"/{process.pid}) is gone" in (dead.error or "")
    assert all(run.status == "failed" for run in dead.streams)


def test_a_distributed_lease_outlives_the_process_that_claimed_it(
    rq_home: Path, holders: list[subprocess.Popen[str]]
) -> None:
    """The CLI claims a distributed sync's lease and exits; the workers hold it from then."""
    registry, (first, second) = _registry_with_syncs(2)
    registry.start_sync(first)
    gone = LockOwner(first, socket.gethostname(), _a_dead_pid(), time.time())
    registry.leases.acquire("shop", first, mode="distributed", ttl=60, owner=gone)
    with pytest.raises(ConflictError):
        registry.leases.acquire("shop", second, mode="embedded", ttl=60, owner=gone)
    assert registry.get_sync(first).status == "running"


def _a_dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


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


# --- takeover of a dead worker's stream (registry/takeover.py) -------------------------------


def test_a_taken_over_stream_drops_the_dead_worker_s_late_delivery(rq_home: Path) -> None:
    registry, (sync_id,) = _registry_with_syncs(1)
    registry.start_sync(sync_id)
    registry.update_stream_run(sync_id, "orders", status="running")
    steps = registry.steps
    job = {"connection": "shop", "sync_id": sync_id, "stream": "orders", "segment": 3}
    steps.handed_on(sync_id, "orders", job, epoch=0)
    assert steps.abandoned() == []  # queued, no worker yet: never taken over
    assert steps.started(sync_id, "orders", 0, "w1@host")
    steps.beat("w2@host", 2)
    assert [s.worker for s in steps.abandoned()] == ["w1@host"]  # w1 never beat

    [step] = steps.abandoned()
    taken = steps.take_over(step)

    assert taken == {**job, "epoch": 1}
    assert steps.take_over(step) is None  # a second reaper loses the race
    assert not steps.started(sync_id, "orders", 0, "w1@host")  # the redelivered old message
    assert steps.started(sync_id, "orders", 1, "w2@host")
    steps.beat("w2@host", 2)
    assert steps.abandoned() == []  # w2 is alive
    steps.released(sync_id, "orders", 1, "w2@host")
    steps.finished(sync_id, "orders")
    assert steps.started_epoch(sync_id, "orders") is None
