"""Request budgets: `acquire(key, cost)` blocks until `cost` requests may go out under `key`.

The key is the connection: all streams of a connection share one budget. Two
implementations sit behind `RateLimiter`: `TokenBucket` here (one process, embedded mode)
and the Redis one in `ratelimit_redis.py` (every worker). `NoLimit` is for specs without
`requests_per_second`.

`hold(key, seconds)` is what a 429 (or a Retry-After) does to the whole connection: no
request under `key` goes out for `seconds`, whichever thread or worker sends it, so the
requests in flight beside the one that was refused back off with it.

`TokenBucket` reserves instead of polling: under a lock a caller takes its tokens even when
that drives the bucket below zero, computes how long until the debt is paid back at `rate`,
releases the lock and sleeps exactly that long. Callers are therefore served in arrival
order, each sleeps once, and the clock and sleep are injectable so tests never sleep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rawquery_workers.spec.models import RateLimit


class RateLimiter(Protocol):
    def acquire(self, key: str, cost: int = 1) -> float:
        """Block until `cost` requests may be sent under `key`; return the seconds waited."""
        ...

    def hold(self, key: str, seconds: float) -> None:
        """Send nothing more under `key` for `seconds` (the API asked us to slow down)."""
        ...


class NoLimit:
    """No cap: `acquire` returns at once, unless a `hold` is in force."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def acquire(self, key: str, cost: int = 1) -> float:
        with self._lock:
            wait = self._until.get(key, 0.0) - self._clock()
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0

    def hold(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._until[key] = max(self._until.get(key, 0.0), until)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    """`rate` requests per second on average with bursts up to `burst`, per key, thread-safe.

    `rate` may be fractional (0.5 = one request every two seconds). A bucket starts full.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str, cost: int = 1) -> float:
        wait = self.reserve(key, cost)
        if wait > 0:
            self._sleep(wait)
        return wait

    def reserve(self, key: str, cost: int = 1) -> float:
        """Take `cost` tokens now (possibly into debt) and return how long to wait before use."""
        if cost < 1:
            raise ValueError(f"cost must be at least 1, got {cost}")
        with self._lock:
            bucket = self._refilled(key)
            bucket.tokens -= cost
            return 0.0 if bucket.tokens >= 0 else -bucket.tokens / self.rate

    def hold(self, key: str, seconds: float) -> None:
        """A debt that the next request waits `seconds` to pay back (and later ones queue
        behind it at `rate`)."""
        with self._lock:
            bucket = self._refilled(key)
            bucket.tokens = min(bucket.tokens, 1.0 - seconds * self.rate)

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), updated=now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
        bucket.updated = now
        return bucket


_shared: dict[str, TokenBucket] = {}
_shared_lock = threading.Lock()


def local_limiter(key: str, rate: float, burst: int) -> TokenBucket:
    """The process-wide TokenBucket of connection `key`, so all its streams share one budget.

    A changed `rate` or `burst` (the spec was updated) replaces the bucket.
    """
    with _shared_lock:
        bucket = _shared.get(key)
        if bucket is None or bucket.rate != float(rate) or bucket.burst != int(burst):
            bucket = _shared[key] = TokenBucket(rate, burst)
        return bucket


def local_limiter_for(key: str, rate_limit: RateLimit) -> RateLimiter:
    """`local_limiter` for a spec's rate limit, or `NoLimit` when it sets no rate."""
    if rate_limit.requests_per_second is None:
        return NoLimit()
    return local_limiter(key, rate_limit.requests_per_second, rate_limit.effective_burst)


def reset_local_limiters() -> None:
    """Forget every shared bucket (tests)."""
    with _shared_lock:
        _shared.clear()
