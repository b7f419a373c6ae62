"""The rate limiter shared by every worker: GCRA in one Lua script, on Redis time.

A connection's budget is one key (`redis_keys.rate_key`) holding its *theoretical arrival
time* (TAT): the moment the bucket would be empty again. Each call *reserves* its slot by
moving the TAT forward and learns how long to wait for it; then it sleeps that long and
sends. N callers waiting at once therefore queue up in slot order with one round trip each
and no polling, whichever worker or process they run in.

- Time comes from Redis `TIME` inside the script: workers' clocks never matter.
- `rate` may be fractional (2.5 per second = one slot every 0.4 s); `burst` requests may go
  back to back after an idle spell. In any window of W seconds at most `burst + rate * W`
  requests are granted.
- The key expires as soon as the bucket is full again, so idle connections leave nothing.
- A reserved slot is spent even if its caller dies or is interrupted while sleeping: the
  budget is never exceeded, at worst a slot goes unused.

Redis outages: a call while Redis is unreachable raises `RawqueryError` saying so (the
stream fails or its task retries). Redis restarted without persistence: the next call just
works (redis-py reconnects, the script is reloaded on NOSCRIPT) and the bucket starts full,
which allows at most one extra burst.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from rawquery_workers.distributed.redis_keys import rate_key, redis_address
from rawquery_workers.errors import RawqueryError

if TYPE_CHECKING:
    from redis.commands.core import Script

# KEYS[1]  the connection's rate key: its TAT, in microseconds of Redis TIME (text)
# ARGV[1]  emission interval in microseconds, 1e6 / requests_per_second (may be fractional)
# ARGV[2]  burst: how many requests may go back to back when the bucket is full
# ARGV[3]  cost: how many requests this call reserves
# Returns  the wait in whole microseconds (rounded up) before the caller may send; 0 = now.
#          The slot is reserved either way, so the caller must wait that long, then send.
GCRA_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + cost * interval
local wait = new_tat - burst * interval - now
if wait < 0 then
  wait = 0
end
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return math.ceil(wait)
"""

# KEYS[1] the connection's rate key; ARGV[1] the emission interval (microseconds); ARGV[2]
# burst; ARGV[3] the hold in microseconds. Moves the TAT so that the next reservation waits
# the hold, whichever worker makes it (a TAT already later is kept).
GCRA_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local held = now + tonumber(ARGV[3]) + (tonumber(ARGV[2]) - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < held then
  tat = held
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return 0
"""


class RedisTokenBucket:
    """`acquire(key, cost)` blocks until `cost` requests of connection `key` may be sent.

    Implements the `ratelimit.RateLimiter` protocol; every process using the same Redis
    and key shares one budget of `rate` requests per second with bursts of `burst`.
    `sleep` is injectable so tests can collect the waits instead of sleeping them.
    """

    def __init__(
        self,
        client: redis.Redis,
        rate: float,
        burst: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._client = client
        self._sleep = sleep
        self._interval_us = 1_000_000.0 / self.rate
        self._script: Script = client.register_script(GCRA_RESERVE)
        self._hold: Script = client.register_script(GCRA_HOLD)

    def reserve(self, key: str, cost: int = 1) -> float:
        """Reserve `cost` slots now and return the seconds to wait before using them."""
        if cost < 1:
            raise ValueError(f"cost must be at least 1, got {cost!r}")
        args: list[str | int] = [repr(self._interval_us), self.burst, cost]
        return int(self._run(self._script, key, args)) / 1_000_000

    def hold(self, key: str, seconds: float) -> None:
        """No worker sends under `key` for `seconds` from now (Redis time)."""
        held_us = max(0, round(seconds * 1_000_000))
        self._run(self._hold, key, [repr(self._interval_us), self.burst, held_us])

    def _run(self, script: Script, key: str, args: list[str | int]) -> int:
        try:
            return int(script(keys=[rate_key(key)], args=args))
        except redis.RedisError as exc:
            raise RawqueryError(
                f"rate limiter for connection '{key}': Redis at {redis_address(self._client)} "
                f"failed ({exc}); check that Redis is running and RAWQUERY_REDIS_URL points "
                "at it, then retry the sync"
            ) from exc

    def acquire(self, key: str, cost: int = 1) -> float:
        """Wait for `cost` requests' worth of budget; return the seconds waited."""
        wait = self.reserve(key, cost)
        if wait > 0:
            self._sleep(wait)
        return wait

    def __repr__(self) -> str:
        return f"RedisTokenBucket(rate={self.rate}, burst={self.burst})"
