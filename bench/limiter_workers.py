"""The shared rate limiter end to end: 4 Celery workers, 3 streams, one enforcing API.

    .venv/bin/python bench/limiter_workers.py [--seconds 30] [--runs 3] [--workers 4]

Each run starts, privately and torn down afterwards: a redis-server on a free port, the
bench API (bench/api.py) in its own process ENFORCING a token bucket of `--rate` per second
with burst `--burst` (429 above it, as the limiter's promise: at most rate + burst requests
in any 1-second window) and keeping a log of every request's arrival time, a temporary
RAWQUERY_HOME with a SQLite catalog, and `--workers` real worker processes
(`celery -A rawquery_workers worker --concurrency 1 -P prefork`). It registers one
connection with 3 streams (offset, page-number and cursor pagination) and
`rate_limit: {"requests_per_second": rate}` (burst left to its default, = rate), enough
pages for the sync to last at least `--seconds` at that rate, runs `rq connections sync`
in distributed mode and checks every table has exactly the served rows.

Reported from the API's log: the busiest sliding 1-second window (bound: rate + burst),
the average rate after the initial burst, (n - burst) / (t_last - t_first), over the whole
sync and over its first `--seconds`, and the number of 429 answers (must be 0).
`--spec-burst N` sets the connection's `rate_limit.burst` (the API keeps `--burst`), e.g.
9 to leave the enforcer one slot of headroom for network jitter; `--keep` keeps the temp
home (worker logs and requests.json, the API's log). Exit status 1 if any run failed, had
inexact rows or saw a 429.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support and bench.api
sys.path.insert(0, str(ROOT / "bench"))

from api import BenchApi  # noqa: E402

from tests.support.polling import wait_for  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

NAME = "limiter"
TOKEN = "bench-token"
PAGE_SIZE = 10
STREAMS = ("by_offset", "by_page", "by_cursor")
RQ = str(Path(sys.executable).parent / "rq")
READY_SECONDS = 60.0


def spec(url: str, rate: float, burst: int | None) -> dict[str, Any]:
    base = {"data_path": "data", "primary_key": ["id"]}
    return {
        "version": "1",
        "base_url": url,
        "auth": {"type": "bearer"},
        "rate_limit": {"requests_per_second": rate, **({"burst": burst} if burst else {})},
        "streams": [
            {**base, "name": "by_offset", "endpoint": "/offset",
             "pagination": {"type": "offset", "page_size": PAGE_SIZE}},
            {**base, "name": "by_page", "endpoint": "/pages",
             "pagination": {"type": "page_number", "page_size_param": "per_page",
                            "page_size": PAGE_SIZE}},
            {**base, "name": "by_cursor", "endpoint": "/cursor", "params": {"limit": PAGE_SIZE},
             "pagination": {"type": "cursor", "cursor_path": "next_cursor", "param": "cursor"}},
        ],
    }  # fmt: skip


@dataclass
class Pool:
    """Real worker processes, each in its own session so its pool children go with it."""

    env: dict[str, str]
    home: Path
    processes: list[subprocess.Popen[bytes]]

    def start(self, count: int, redis_url: str) -> None:
        for n in range(1, count + 1):
            command = [
                sys.executable, "-m", "celery", "-A", "rawquery_workers", "worker",
                "--concurrency", "1", "-P", "prefork", "-n", f"w{n}@%h",
                "--without-gossip", "--without-mingle", "-l", "INFO",
            ]  # fmt: skip
            with open(self.home / f"w{n}.log", "ab") as out:
                self.processes.append(
                    subprocess.Popen(command, env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
                )  # fmt: skip
        self._wait_ready(count, redis_url)

    def _wait_ready(self, count: int, redis_url: str) -> None:
        from celery import Celery

        probe = Celery("probe", broker=redis_url)
        nodes = [f"w{n}@{socket.gethostname()}" for n in range(1, count + 1)]
        pending = set(nodes)

        def ready() -> bool:
            for n, process in enumerate(self.processes, 1):
                if process.poll() is not None:
                    log = (self.home / f"w{n}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"worker w{n} exited:\n{log}")
            with contextlib.suppress(Exception):
                for reply in probe.control.ping(destination=sorted(pending), timeout=0.5):
                    pending.difference_update(reply)
            return not pending

        try:
            wait_for(ready, READY_SECONDS, f"{count} workers to answer ping", every=0.2)
        finally:
            probe.close()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            with contextlib.suppress(ProcessLookupError):  # orphaned pool children, if any
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()


@contextlib.contextmanager
def environment(home: Path, redis_url: str) -> Iterator[dict[str, str]]:
    """RAWQUERY_* for a temp home, applied to this process too (restored after)."""
    from cryptography.fernet import Fernet

    from rawquery_workers.settings import reset_settings

    (home / "warehouse").mkdir(parents=True)
    env = {
        "RAWQUERY_HOME": str(home),
        "RAWQUERY_CATALOG_URI": f"sqlite:///{home / 'catalog.db'}",
        "RAWQUERY_WAREHOUSE": (home / "warehouse").as_uri(),
        "RAWQUERY_REDIS_URL": redis_url,
        "RAWQUERY_SECRET_KEY": Fernet.generate_key().decode(),
    }
    saved = {k: v for k, v in os.environ.items() if k.startswith("RAWQUERY_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    reset_settings()
    try:
        yield {**os.environ, "PYTHONUNBUFFERED": "1"}
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)
        reset_settings()


def table_counts() -> dict[str, tuple[int, int]]:
    """(rows, distinct ids) of each stream's table."""
    from rawquery_workers.sink import open_sink

    sink = open_sink()
    out = {}
    for stream in STREAMS:
        ids = sink.scan_arrow(NAME, stream).read_all().column("id").to_pylist()
        out[stream] = (len(ids), len(set(ids)))
    return out


def figures(log: list[list[float]], rate: float, burst: int, seconds: float) -> dict[str, Any]:
    """Limiter figures from the API's log of [monotonic arrival time, status]."""
    times = sorted(t for t, _status in log)
    busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    span = times[-1] - times[0]
    first = bisect.bisect_left(times, times[0] + seconds)
    return {
        "requests": len(times),
        "span": span,
        "busiest": busiest,
        "average": (len(times) - burst) / span,
        "average_first": (first - burst) / seconds if span >= seconds else float("nan"),
        "first_requests": first,
        "429": sum(1 for _t, status in log if status == 429),
        "429_at": [round(t - times[0], 3) for t, status in log if status == 429],
        "other_errors": sum(1 for _t, status in log if status not in (200, 429)),
    }


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    from rawquery_workers.registry import open_registry
    from rawquery_workers.spec.credentials import Credentials

    # Enough pages per stream that the requests past the burst take >= --seconds (+10%).
    pages = math.ceil((args.rate * args.seconds * 1.1 + args.burst) / len(STREAMS))
    records = pages * PAGE_SIZE
    home = Path(tempfile.mkdtemp(prefix="rq-limiter-"))
    redis_server = RedisServer()
    api = BenchApi(records, PAGE_SIZE, TOKEN, rate=args.rate, burst=args.burst)
    pool: Pool | None = None
    try:
        redis_server.start()
        api.start()
        with environment(home, redis_server.url) as env:
            pool = Pool(env, home, [])
            pool.start(args.workers, redis_server.url)
            open_registry().create_connection(
                NAME, spec(api.url, args.rate, args.spec_burst), Credentials(token=TOKEN), None
            )
            api.reset()  # the log holds the sync's requests only
            started = time.monotonic()
            done = subprocess.run(
                [RQ, "connections", "sync", NAME, "--wait"], env=env, capture_output=True,
                text=True, timeout=args.seconds * 4 + 120,
            )  # fmt: skip
            wall = time.monotonic() - started
            counts = table_counts() if done.returncode == 0 else {}
        stats = api.stats()
    finally:
        if pool is not None:
            pool.stop()
        api.stop()
        redis_server.close()
        if args.keep:
            with contextlib.suppress(NameError):
                (home / "requests.json").write_text(json.dumps(stats["log"]))
            print(f"kept {home} (worker logs, requests.json)", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
    exact = bool(counts) and all(c == (records, records) for c in counts.values())
    result = figures(stats["log"], args.rate, args.burst, args.seconds)
    result |= {"ok": done.returncode == 0, "exact": exact, "records": records, "pages": pages,
               "counts": counts, "wall": wall}  # fmt: skip
    if done.returncode != 0:
        result["output"] = (done.stdout + done.stderr)[-3000:]
    return result


def show_run(n: int, r: dict[str, Any], args: argparse.Namespace) -> None:
    bound = args.rate + args.burst
    print(f"run {n}: sync {'succeeded' if r['ok'] else 'FAILED'} in {r['wall']:.1f} s; "
          f"rows {'exact' if r['exact'] else 'NOT exact'} "
          f"({', '.join(f'{s}={c[0]}/{c[1]} distinct' for s, c in r['counts'].items())}; "
          f"expected {r['records']} each)")  # fmt: skip
    print(f"  requests seen   {r['requests']} over {r['span']:.2f} s "
          f"({r['429']} x 429, {r['other_errors']} other non-200)")  # fmt: skip
    if r["429_at"]:
        print(f"  429 at          {r['429_at']} s after the first request")
    print(f"  busiest 1 s     {r['busiest']} (bound rate + burst = {bound:g})")
    print(f"  average rate    {r['average']:.3f}/s over the sync, "
          f"{r['average_first']:.3f}/s over the first {args.seconds:g} s "
          f"({r['first_requests']} requests); both exclude the {args.burst} burst")  # fmt: skip
    if "output" in r:
        print("  sync output:\n" + r["output"])


def summary(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nover {len(results)} runs: median [min - max]")
    for key, label, fmt in [
        ("busiest", "busiest 1 s window", "{:.0f}"),
        ("average", "average rps (sync)", "{:.3f}"),
        ("average_first", f"average rps (first {args.seconds:g} s)", "{:.3f}"),
        ("429", "429 answers", "{:.0f}"),
        ("requests", "requests", "{:.0f}"),
        ("span", "seconds (first..last request)", "{:.2f}"),
    ]:
        values = [r[key] for r in results]
        low, mid, high = (fmt.format(v) for v in (min(values), statistics.median(values),
                                                  max(values)))  # fmt: skip
        print(f"  {label:<32} {mid} [{low} - {high}]")
    good = sum(1 for r in results if r["ok"] and r["exact"])
    print(f"  syncs succeeded with exact rows  {good}/{len(results)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=10, help="the spec's default: = rate")
    parser.add_argument(
        "--spec-burst", type=int, default=None, help="the connection's rate_limit.burst"
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp home (worker logs)")
    args = parser.parse_args()
    print(f"API enforces a token bucket of {args.rate:g}/s with burst {args.burst} (429 above "
          f"it); connection rate_limit {args.rate:g}/s, burst "
          f"{args.spec_burst or 'default (= rate)'}; {args.workers} workers, "
          f"{len(STREAMS)} streams")  # fmt: skip
    results = []
    for n in range(1, args.runs + 1):
        results.append(run_once(args))
        show_run(n, results[-1], args)
    if len(results) > 1:
        summary(results, args)
    failed = any(not r["ok"] or not r["exact"] or r["429"] for r in results)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
