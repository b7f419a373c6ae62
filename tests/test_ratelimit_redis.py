"""RedisTokenBucket against a private redis-server: the waits it computes, and the real rate
it holds across threads and processes (measured from the times `acquire` returns)."""

from __future__ import annotations

import bisect
import multiprocessing
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from rawquery_workers.distributed.ratelimit_redis import GCRA_RESERVE, RedisTokenBucket
from rawquery_workers.distributed.redis_keys import (
    oauth_lock_key,
    rate_key,
    segment_enqueued_key,
    step_attempts_key,
)
from rawquery_workers.errors import RawqueryError
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


# --- the waits (sleep injected: nothing sleeps) ----------------------------------------------


def test_burst_goes_at_once_then_one_slot_per_interval(client: redis.Redis) -> None:
    slept: list[float] = []
    limiter = RedisTokenBucket(client, rate=10, burst=3, sleep=slept.append)
    waits = [limiter.acquire("shop") for _ in range(6)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == pytest.approx([0.1, 0.2, 0.3], abs=0.02)
    assert slept == waits[3:]


def test_fractional_rate_spaces_slots_by_its_interval(client: redis.Redis) -> None:
    limiter = RedisTokenBucket(client, rate=2.5, burst=1, sleep=lambda _: None)
    waits = [limiter.reserve("shop") for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.4, 0.8, 1.2], abs=0.02)


def test_cost_reserves_several_slots(client: redis.Redis) -> None:
    limiter = RedisTokenBucket(client, rate=10, burst=1, sleep=lambda _: None)
    assert limiter.reserve("shop", cost=3) == pytest.approx(0.2, abs=0.02)
    assert limiter.reserve("shop") == pytest.approx(0.3, abs=0.02)


def test_a_hold_is_seen_by_every_limiter_of_the_connection(client: redis.Redis) -> None:
    """Two workers' limiters: a 429 one of them got holds the other back too."""
    mine = RedisTokenBucket(client, rate=10, burst=5, sleep=lambda _: None)
    theirs = RedisTokenBucket(redis.Redis.from_url(_url(client)), rate=10, burst=5)
    mine.hold("shop", 2.0)
    mine.hold("shop", 0.5)  # a shorter hold does not shorten it
    assert theirs.reserve("shop") == pytest.approx(2.0, abs=0.05)
    assert theirs.reserve("shop") == pytest.approx(2.1, abs=0.05)
    assert theirs.reserve("elsewhere") == 0.0


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def test_connections_have_separate_budgets(client: redis.Redis) -> None:
    limiter = RedisTokenBucket(client, rate=1, burst=1, sleep=lambda _: None)
    assert limiter.reserve("shop") == 0
    assert limiter.reserve("crm") == 0
    assert limiter.reserve("shop") == pytest.approx(1.0, abs=0.02)


def test_script_returns_the_wait_in_microseconds(client: redis.Redis) -> None:
    key = rate_key("shop")
    # interval 250 ms (4 per second), burst 2, cost 1
    waits = [int(client.eval(GCRA_RESERVE, 1, key, "250000", 2, 1)) for _ in range(4)]
    assert waits[:2] == [0, 0]
    assert waits[2] == pytest.approx(250_000, abs=20_000)
    assert waits[3] == pytest.approx(500_000, abs=20_000)


def test_state_expires_once_the_bucket_is_full_again(client: redis.Redis) -> None:
    limiter = RedisTokenBucket(client, rate=10, burst=1, sleep=lambda _: None)
    limiter.reserve("shop")
    assert 0 < client.pttl(rate_key("shop")) <= 101
    deadline = time.monotonic() + 2.0
    while client.exists(rate_key("shop")) and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for Redis to expire the key, bounded
    assert not client.exists(rate_key("shop"))


@pytest.mark.parametrize(("rate", "burst", "cost"), [(0, 1, 1), (-1.0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_bad_arguments_are_refused(client: redis.Redis, rate: float, burst: int, cost: int) -> None:
    with pytest.raises(ValueError):
        RedisTokenBucket(client, rate=rate, burst=burst).reserve("shop", cost=cost)


# --- Redis going away ------------------------------------------------------------------------


def test_redis_down_is_a_clear_error_and_the_next_call_after_restart_works(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    limiter = RedisTokenBucket(client, rate=1, burst=1, sleep=lambda _: None)
    assert limiter.reserve("shop") == 0
    redis_server.stop()
    with pytest.raises(RawqueryError) as caught:
        limiter.acquire("shop")
    message = str(caught.value)
    assert "connection 'shop'" in message
    assert f"Redis at {redis_server.url}" in message
    assert "RAWQUERY_REDIS_URL" in message
    redis_server.start()
    # State was not persisted: the bucket starts full again; the script is reloaded.
    assert limiter.reserve("shop") == 0
    redis_server.restart()
    assert limiter.reserve("shop") == 0
    assert limiter.reserve("shop") == pytest.approx(1.0, abs=0.02)


# --- the rate actually held ------------------------------------------------------------------


def _grant_times(url: str, rate: float, burst: int, threads: int, each: int) -> list[float]:
    """`threads` threads each acquire `each` times; the monotonic times acquire returned."""
    client = redis.Redis.from_url(url)
    limiter = RedisTokenBucket(client, rate=rate, burst=burst)
    start = threading.Barrier(threads)
    times: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        start.wait()
        for _ in range(each):
            limiter.acquire("shop")
            now = time.monotonic()
            with lock:
                times.append(now)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.close()
    return times


def _process_main(
    url: str, rate: float, burst: int, threads: int, each: int, start: Any, out: Any
) -> None:
    start.wait()
    out.put(_grant_times(url, rate, burst, threads, each))


def _assert_rate_held(times: list[float], rate: float, burst: int) -> None:
    times = sorted(times)
    busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    assert busiest <= rate + burst, f"{busiest} grants in one second"
    # The first `burst` grants go at once, then one per 1/rate seconds until the last.
    average = (len(times) - burst) / (times[-1] - times[0])
    assert average == pytest.approx(rate, rel=0.05)


def test_four_threads_share_twenty_per_second(redis_server: RedisServer) -> None:
    times = _grant_times(redis_server.url, rate=20, burst=5, threads=4, each=16)
    assert len(times) == 64  # about 3 s: 5 at once, then 59 at 20 per second
    _assert_rate_held(times, rate=20, burst=5)


def test_two_processes_share_twenty_per_second(redis_server: RedisServer) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    out = context.Queue()
    args = (redis_server.url, 20, 5, 2, 16, start, out)
    processes = [context.Process(target=_process_main, args=args) for _ in range(2)]
    for process in processes:
        process.start()
    times = out.get(timeout=60) + out.get(timeout=60)
    for process in processes:
        process.join(timeout=10)
        assert process.exitcode == 0
    assert len(times) == 64
    _assert_rate_held(times, rate=20, burst=5)


def test_fractional_rate_is_held_across_threads(redis_server: RedisServer) -> None:
    times = sorted(_grant_times(redis_server.url, rate=2.5, burst=1, threads=2, each=4))
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) > 0.35
    _assert_rate_held(times, rate=2.5, burst=1)


# --- key names -------------------------------------------------------------------------------


def test_every_key_of_a_connection_shares_its_hash_tag() -> None:
    keys = [rate_key("shop"), oauth_lock_key("shop")]
    keys += [segment_enqueued_key("shop", "s1", "orders", 2)]
    keys += [step_attempts_key("shop", "s1", "orders", 2, "fetch")]
    assert all(key.startswith("rq:{shop}:") for key in keys)
    assert keys[2:] == [
        "rq:{shop}:sync:s1:orders:2:enqueued",
        "rq:{shop}:sync:s1:orders:2:fetch:attempts",
    ]
    assert len(set(keys)) == len(keys)
    with pytest.raises(ValueError):
        rate_key("a}b")
