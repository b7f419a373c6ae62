"""(d) distributed syncs with 1, 2 and 4 worker processes and (g) one-page latency.

    .venv/bin/python bench/distributed.py [--records 200000] [--runs 3]

A private `redis-server` (nothing on disk), a fresh RAWQUERY_HOME (SQLite catalog, file
warehouse) per measurement and N `celery -A rawquery_workers worker --concurrency 1`
processes. A sync is started the way a user does, `rq connections sync NAME --no-wait`,
and is done when the registry says `succeeded` (polled every 10 ms). Figures:

- (d) 200k records, one connection (one stream, one segment chain), N = 1, 2, 4 workers;
- (d') rate-limited: 8 connections each limited to 5 requests/s by their spec (the
  Redis limiter), each 20 pages, all enqueued at once (in-process, no CLI start-up),
  N = 1, 2, 4 workers: total time;
- (g) a one-page sync, worker warm: from starting `rq ... --no-wait` to `succeeded` (the
  CLI's own start-up included), and from enqueueing in-process (plan_sync, claim,
  enqueue_sync: what the command does) to `succeeded`.

Prints one JSON line (the last line) with every figure.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from api import BenchApi  # noqa: E402
from embedded import spec  # noqa: E402

from tests.support.redis_server import RedisServer  # noqa: E402

RQ = str(Path(sys.executable).parent / "rq")
TOKEN = "bench-token"
READY_SECONDS = 60.0


class Cluster:
    """One RAWQUERY_HOME + Redis + worker processes; `env` is applied to this process too."""

    def __init__(self, folder: Path, redis_url: str) -> None:
        from cryptography.fernet import Fernet

        (folder / "warehouse").mkdir()
        self.folder = folder
        self.redis_url = redis_url
        self.env = {
            "RAWQUERY_HOME": str(folder),
            "RAWQUERY_CATALOG_URI": f"sqlite:///{folder / 'catalog.db'}",
            "RAWQUERY_WAREHOUSE": (folder / "warehouse").as_uri(),
            "RAWQUERY_REDIS_URL": redis_url,
            "RAWQUERY_SECRET_KEY": Fernet.generate_key().decode(),
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAWQUERY_")}
        self.full_env = {**base, **self.env, "PYTHONUNBUFFERED": "1"}
        self.workers: list[subprocess.Popen[bytes]] = []
        os.environ.update(self.env)
        from rawquery_workers.settings import reset_settings
        from rawquery_workers.sink.catalog import open_catalog

        reset_settings()
        # Workers opening a fresh SQLite catalog at the same moment race on creating its
        # tables ("table iceberg_tables already exists"): create it before they start.
        open_catalog()

    def start_workers(self, count: int) -> None:
        names = [f"b{i}" for i in range(len(self.workers), len(self.workers) + count)]
        for name in names:
            command = [sys.executable, "-m", "celery", "-A", "rawquery_workers", "worker",
                       "--concurrency", "1", "-P", "prefork", "-n", f"{name}@%h",
                       "--without-gossip", "--without-mingle", "-l", "WARNING"]  # fmt: skip
            with open(self.folder / f"{name}.log", "ab") as log:
                self.workers.append(
                    subprocess.Popen(command, env=self.full_env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
                )  # fmt: skip
        self._wait_ready([f"{n}@{socket.gethostname()}" for n in names])

    def _wait_ready(self, nodes: list[str]) -> None:
        from celery import Celery

        probe = Celery("probe", broker=self.redis_url)
        deadline = time.monotonic() + READY_SECONDS
        try:
            for node in nodes:
                while not _pinged(probe, node):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"worker {node} did not answer a ping")
                    time.sleep(0.1)  # polling other processes: nothing to be notified by
        finally:
            probe.close()

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.workers.clear()

    def connect(self, name: str, body: dict[str, Any]) -> None:
        from rawquery_workers.registry import open_registry
        from rawquery_workers.spec.credentials import Credentials

        open_registry().create_connection(name, body, Credentials(token=TOKEN), None)

    def enqueue(self, name: str) -> tuple[str, float]:
        """`rq connections sync NAME --no-wait`; (sync id, when the command returned)."""
        command = [RQ, "connections", "sync", name, "--no-wait"]
        done = subprocess.run(command, env=self.full_env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"rq connections sync {name} failed: {done.stderr[-2000:]}")
        return done.stdout.strip().splitlines()[-1], time.perf_counter()

    def enqueue_here(self, name: str) -> str:
        """What `rq connections sync NAME --no-wait` does, in this process (no CLI start-up)."""
        from rawquery_workers.distributed.celery_app import enqueue_sync
        from rawquery_workers.distributed.lease import claim
        from rawquery_workers.registry import open_registry
        from rawquery_workers.registry.connections import plan_sync

        registry = open_registry()
        sync_id, _ = plan_sync(registry, name)
        claim(registry, name, sync_id)
        enqueue_sync(sync_id)
        return sync_id

    def wait(self, sync_ids: list[str], timeout: float = 900.0) -> float:
        """Poll the registry until every sync succeeded; returns the time it was seen."""
        from rawquery_workers.registry import open_registry

        registry = open_registry()
        pending = set(sync_ids)
        deadline = time.monotonic() + timeout
        while pending:
            for sync_id in list(pending):
                status = registry.get_sync(sync_id).status
                if status == "failed":
                    raise RuntimeError(f"sync {sync_id} failed: {registry.get_sync(sync_id)}")
                if status == "succeeded":
                    pending.discard(sync_id)
            if time.monotonic() > deadline:
                raise RuntimeError(f"syncs not done after {timeout}s: {pending}")
            if pending:
                time.sleep(0.01)  # polling the registry of other processes
        return time.perf_counter()


def _pinged(probe: Any, node: str) -> bool:
    try:
        return bool(probe.control.ping(destination=[node], timeout=0.5))
    except Exception:  # broker not answering yet: ask again
        return False


@contextmanager
def cluster(redis: RedisServer, workers: int) -> Any:
    import redis as redis_lib

    redis_lib.Redis.from_url(redis.url).flushall()
    with tempfile.TemporaryDirectory(prefix="rq-dist-bench-") as folder:
        c = Cluster(Path(folder), redis.url)
        try:
            c.start_workers(workers)
            yield c
        finally:
            c.stop()


def full_sync(redis: RedisServer, api: BenchApi, workers: int) -> dict[str, Any]:
    with cluster(redis, workers) as c:
        c.connect("bench", spec(api.url))
        started = time.perf_counter()
        sync_id, _ = c.enqueue("bench")
        seconds = c.wait([sync_id]) - started
        rss = _children_rss(c)
    return {"workers": workers, "seconds": seconds, "worker_rss_mb": rss}


def rate_limited(redis: RedisServer, api: BenchApi, workers: int, connections: int,
                 rps: float) -> dict[str, Any]:  # fmt: skip
    with cluster(redis, workers) as c:
        for i in range(connections):
            body = spec(api.url)
            body["rate_limit"] = {"requests_per_second": rps}
            c.connect(f"limited{i}", body)
        started = time.perf_counter()
        ids = [c.enqueue_here(f"limited{i}") for i in range(connections)]
        enqueued = time.perf_counter() - started
        seconds = c.wait(ids) - started
    return {"workers": workers, "seconds": seconds, "enqueue_seconds": enqueued}


def one_page(redis: RedisServer, api: BenchApi, workers: int, runs: int) -> dict[str, Any]:
    from_start, from_enqueue = [], []
    with cluster(redis, workers) as c:
        c.connect("tiny", spec(api.url))
        c.wait([c.enqueue_here("tiny")])  # warms the worker (imports, catalog) and this process
        for _ in range(runs):
            started = time.perf_counter()
            sync_id, _ = c.enqueue("tiny")
            from_start.append(c.wait([sync_id]) - started)
            started = time.perf_counter()
            from_enqueue.append(c.wait([c.enqueue_here("tiny")]) - started)
    return {"from_start": from_start, "from_enqueue": from_enqueue}


def _children_rss(c: Cluster) -> float:
    """Largest VmHWM among the worker processes' pool children (MB)."""
    best = 0.0
    for proc in c.workers:
        pids = [proc.pid]
        path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        if path.exists():
            pids += [int(p) for p in path.read_text().split()]
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        best = max(best, int(line.split()[1]) / 1024)
            except OSError:
                pass
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rps", type=float, default=5.0)
    parser.add_argument("--pages", type=int, default=20, help="pages per limited connection")
    parser.add_argument("--latency-runs", type=int, default=7)
    parser.add_argument("--skip", default="", help="comma list of: full,limited,latency")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    out: dict[str, Any] = {"records": args.records, "full": [], "limited": [], "latency": {}}
    with RedisServer() as redis:
        if "full" not in skip:
            with BenchApi(records=args.records, token=TOKEN) as api:
                for run in range(args.runs):
                    for n in counts:
                        print(f"(d) {args.records:,} records, {n} workers, run {run + 1}",
                              file=sys.stderr, flush=True)  # fmt: skip
                        out["full"].append(full_sync(redis, api, n))
        if "limited" not in skip:
            # Exactly `pages` full pages; the last one (shorter than the page size) ends it.
            with BenchApi(records=args.pages * 100 - 1, token=TOKEN) as api:
                out["limited_setup"] = {"connections": args.connections, "rps": args.rps,
                                        "pages_per_connection": args.pages}  # fmt: skip
                for run in range(args.runs):
                    for n in counts:
                        print(f"(d) rate-limited, {n} workers, run {run + 1}", file=sys.stderr,
                              flush=True)  # fmt: skip
                        out["limited"].append(
                            rate_limited(redis, api, n, args.connections, args.rps)
                        )
        if "latency" not in skip:
            with BenchApi(records=50, token=TOKEN) as api:
                print("(g) one-page latency", file=sys.stderr, flush=True)
                out["latency"] = one_page(redis, api, 1, max(5, args.latency_runs))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


def by_workers(
    results: list[dict[str, Any]],
) -> Iterator[tuple[int, list[dict[str, Any]], float, float]]:
    """(worker count, its runs, their median seconds, the smallest count's median)."""
    base = None
    for n in sorted({r["workers"] for r in results}):
        rows = [r for r in results if r["workers"] == n]
        median = statistics.median(r["seconds"] for r in rows)
        base = base or median
        yield n, rows, median, base


def summary(out: dict[str, Any]) -> list[str]:
    """Markdown lines for bench/README.md."""

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"

    lines: list[str] = []
    if out["full"]:
        lines += ["", f"(d) distributed sync of {out['records']:,} records (one connection, "
                  "one stream), `rq connections sync --no-wait` to `succeeded`:", ""]  # fmt: skip
        for n, rows, med, base in by_workers(out["full"]):
            rss = statistics.median(r["worker_rss_mb"] for r in rows)
            lines.append(f"- {n} worker(s): {spread([r['seconds'] for r in rows])}, "
                         f"{out['records'] / med:,.0f} records/s, {base / med:.2f} x of 1 worker, "
                         f"worker peak RSS {rss:.0f} MB")  # fmt: skip
    if out["limited"]:
        s = out["limited_setup"]
        lines += ["", f"(d) rate-limited: {s['connections']} connections at {s['rps']:g} "
                  f"requests/s each, {s['pages_per_connection']} pages each, all enqueued "
                  "at once, until all succeeded:", ""]  # fmt: skip
        for n, rows, med, base in by_workers(out["limited"]):
            lines.append(f"- {n} worker(s): {spread([r['seconds'] for r in rows])}; "
                         f"{med / base:.2f} of 1 worker's time (ideal {1 / n:.2f})")  # fmt: skip
    if out["latency"]:
        lat = out["latency"]
        lines += ["", f"(g) one-page distributed sync, 1 warm worker, {len(lat['from_start'])} "
                  "runs (after one warm-up):", "",
                  f"- from starting `rq connections sync --no-wait` to `succeeded`: "
                  f"{spread(lat['from_start'])}",
                  "- from enqueueing (what `--no-wait` does after its start-up: plan, claim, "
                  "enqueue; in the bench process) to `succeeded`: "
                  f"{spread(lat['from_enqueue'])}"]  # fmt: skip
    return lines


if __name__ == "__main__":
    main()
