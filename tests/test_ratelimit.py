"""The in-process token bucket, driven by a fake clock: nothing here really sleeps."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawquery_workers.http.ratelimit import (
    NoLimit,
    RateLimiter,
    TokenBucket,
    local_limiter,
    local_limiter_for,
    reset_local_limiters,
)
from rawquery_workers.spec.models import RateLimit
from tests.support.http_helpers import FakeClock


def bucket(rate: float, burst: int, clock: FakeClock) -> TokenBucket:
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)


def test_rate_10_burst_10_serves_a_burst_then_one_every_tenth_of_a_second() -> None:
    clock = FakeClock()
    limiter = bucket(10, 10, clock)
    waits = [limiter.acquire("conn") for _ in range(15)]
    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.1] * 5)
    assert clock.now == pytest.approx(0.5)


def test_a_full_second_idle_refills_the_burst_but_never_beyond_it() -> None:
    clock = FakeClock()
    limiter = bucket(10, 10, clock)
    for _ in range(10):
        limiter.acquire("conn")
    clock.now += 5.0  # idle far longer than needed to refill
    waits = [limiter.acquire("conn") for _ in range(11)]
    assert waits[:10] == [0.0] * 10
    assert waits[10] == pytest.approx(0.1)


def test_partial_refill_waits_only_for_the_missing_fraction() -> None:
    clock = FakeClock()
    limiter = bucket(10, 10, clock)
    for _ in range(10):
        limiter.acquire("conn")
    clock.now += 0.05
    assert limiter.acquire("conn") == pytest.approx(0.05)


def test_fractional_rate_half_a_request_per_second() -> None:
    clock = FakeClock()
    limiter = bucket(0.5, 1, clock)
    waits = [limiter.acquire("slow") for _ in range(4)]
    assert waits == pytest.approx([0.0, 2.0, 2.0, 2.0])
    assert clock.now == pytest.approx(6.0)


def test_cost_takes_several_tokens() -> None:
    clock = FakeClock()
    limiter = bucket(2, 4, clock)
    assert limiter.acquire("k", cost=4) == 0.0
    assert limiter.acquire("k", cost=2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cost"):
        limiter.acquire("k", cost=0)


def test_keys_have_separate_buckets() -> None:
    clock = FakeClock()
    limiter = bucket(1, 1, clock)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("b") == 0.0
    assert limiter.acquire("a") == pytest.approx(1.0)


def test_bad_rate_or_burst_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, 0)


def test_two_threads_sharing_a_key_share_one_budget() -> None:
    """Frozen clock, sleep only records: each caller's wait is its reserved place in line."""
    frozen = FakeClock()
    waits: list[float] = []
    lock = threading.Lock()

    def record(seconds: float) -> None:
        with lock:
            waits.append(seconds)

    limiter = TokenBucket(10, 10, clock=frozen, sleep=record)
    start = threading.Barrier(2)
    returned: list[float] = []

    def worker() -> None:
        start.wait()
        got = [limiter.acquire("shared") for _ in range(15)]
        with lock:
            returned.extend(got)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = [0.0] * 10 + [0.1 * i for i in range(1, 21)]
    assert sorted(returned) == pytest.approx(expected)
    assert sorted(waits) == pytest.approx(expected[10:])  # only real waits sleep


def test_local_limiter_is_shared_per_connection_key() -> None:
    reset_local_limiters()
    try:
        first = local_limiter("shop", 5, 5)
        assert local_limiter("shop", 5, 5) is first
        assert local_limiter("other", 5, 5) is not first
        changed = local_limiter("shop", 2, 2)
        assert changed is not first and (changed.rate, changed.burst) == (2.0, 2)
    finally:
        reset_local_limiters()


def test_local_limiter_for_a_spec_without_a_rate_is_no_limit() -> None:
    reset_local_limiters()
    try:
        assert isinstance(local_limiter_for("c", RateLimit()), NoLimit)
        limited = local_limiter_for("c", RateLimit(requests_per_second=0.5))
        assert isinstance(limited, TokenBucket)
        assert (limited.rate, limited.burst) == (0.5, 1)
    finally:
        reset_local_limiters()


def test_no_limit_never_waits_and_both_satisfy_the_protocol() -> None:
    limiters: list[RateLimiter] = [NoLimit(), TokenBucket(1, 1)]
    assert limiters[0].acquire("x", cost=100) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(min_value=0.1, max_value=50),
    burst=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=80),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, gaps: list[float]
) -> None:
    clock = FakeClock()
    limiter = bucket(rate, burst, clock)
    sent_at = []
    for gap in gaps:
        clock.now += gap
        limiter.acquire("k")
        sent_at.append(clock.now)
    for i, start in enumerate(sent_at):
        for j in range(i, len(sent_at)):
            window = sent_at[j] - start
            assert j - i + 1 <= burst + rate * window + 1e-6


def test_a_hold_makes_the_next_request_wait_it_out_then_the_rate_resumes() -> None:
    clock = FakeClock()
    limiter = bucket(10, 5, clock)
    limiter.acquire("conn")
    limiter.hold("conn", 2.0)  # a 429 with Retry-After: 2
    waits = [limiter.acquire("conn") for _ in range(3)]
    assert waits[0] == pytest.approx(2.0)
    assert waits[1:] == pytest.approx([0.1, 0.1])  # queued behind it at the rate
    assert limiter.acquire("other") == 0.0  # another connection is not held


def test_a_shorter_hold_never_shortens_a_longer_one() -> None:
    clock = FakeClock()
    for limiter in (bucket(10, 5, clock), NoLimit(clock=clock, sleep=clock.sleep)):
        limiter.hold("conn", 3.0)
        limiter.hold("conn", 1.0)
        start = clock.now
        limiter.acquire("conn")
        assert clock.now - start == pytest.approx(3.0)


def test_without_a_rate_a_hold_still_holds_every_thread_of_the_connection() -> None:
    clock = FakeClock()
    limiter = NoLimit(clock=clock, sleep=clock.sleep)
    assert limiter.acquire("conn") == 0.0
    limiter.hold("conn", 1.5)
    assert limiter.acquire("conn") == pytest.approx(1.5)
    assert limiter.acquire("conn") == 0.0  # over once waited out
    assert limiter.acquire("elsewhere") == 0.0
