"""How exactly RedisTokenBucket holds a rate shared by several processes.

    .venv/bin/python bench/limiter_precision.py                  # 4 processes, 10 rps, 30 s
    .venv/bin/python bench/limiter_precision.py --rate 2.5 --seconds 10 --processes 8

Starts a private redis-server (or uses --redis-url), lets every process acquire from one
connection's budget as fast as the limiter allows, and reports the busiest 1-second window
(the limiter promises at most rate + burst) and the average rate after the initial burst.
"""

from __future__ import annotations

import argparse
import bisect
import math
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

import redis  # noqa: E402

from rawquery_workers.distributed.ratelimit_redis import RedisTokenBucket  # noqa: E402
from rawquery_workers.distributed.redis_keys import rate_key  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

KEY = "bench"


def _worker(url: str, rate: float, burst: int, count: int, start: Any, out: Any) -> None:
    client = redis.Redis.from_url(url)
    limiter = RedisTokenBucket(client, rate=rate, burst=burst)
    times: list[float] = []
    start.wait()
    for _ in range(count):
        limiter.acquire(KEY)
        times.append(time.monotonic())
    out.put(times)


def measure(url: str, processes: int, rate: float, burst: int, seconds: float) -> list[float]:
    """Grant times (time.monotonic, comparable across processes on Linux), sorted."""
    each = math.ceil((burst + rate * seconds) / processes)
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_worker, args=(url, rate, burst, each, start, out))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    times = [t for _ in workers for t in out.get()]
    for worker in workers:
        worker.join()
    return sorted(times)


def report(times: list[float], rate: float, burst: int) -> str:
    busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    span = times[-1] - times[0]
    average = (len(times) - burst) / span
    gaps = [b - a for a, b in zip(times[burst:], times[burst + 1 :], strict=False)]
    return "\n".join(
        [
            f"grants           {len(times)} in {span:.2f} s",
            f"busiest 1 s      {busiest} grants (bound: rate + burst = {rate + burst:g})",
            f"average rate     {average:.3f} per s after the burst "
            f"({100 * (average - rate) / rate:+.2f}% off {rate:g})",
            f"gap min/max      {min(gaps) * 1000:.1f} / {max(gaps) * 1000:.1f} ms "
            f"(slot: {1000 / rate:.1f} ms)",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=None, help="default: one second's worth")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--redis-url", default=None, help="default: a private redis-server")
    args = parser.parse_args()
    burst = args.burst if args.burst is not None else max(1, int(args.rate))
    print(f"{args.processes} processes, rate {args.rate:g}/s, burst {burst}, ~{args.seconds:g} s")
    if args.redis_url:
        redis.Redis.from_url(args.redis_url).delete(rate_key(KEY))
        times = measure(args.redis_url, args.processes, args.rate, burst, args.seconds)
    else:
        with RedisServer() as server:
            times = measure(server.url, args.processes, args.rate, burst, args.seconds)
    print(report(times, args.rate, burst))


if __name__ == "__main__":
    main()
