"""A seeded schedule of faults against real workers, ending exact every time.

Three incremental streams (keyed, with a cursor) on an API answering in 20 ms, two
`celery worker` processes on a private redis-server with an append-only file, segments of
20 records. Each run changes the API (updates and new records), starts a sync, and while
its fetches are under way injects one fault drawn (seeded) from:

- `child`: SIGKILL of the pool process running a stream's step (Celery redelivers it);
- `main`: SIGKILL of a worker's main process (its orphaned child finishes its task);
- `group`: SIGKILL of a worker's whole process group (the other worker's reaper takes the
  stream over, registry/takeover.py);
- `pause`: SIGSTOP of a pool process for longer than the lease (4 s), then SIGCONT;
- `redis`: SIGKILL of redis-server, back 3 s later with its append-only file;
- `redis-empty`: the same, but back empty: the queue is lost, and the reapers publish
  what it held again (a new Redis incarnation, registry/takeover.py);
- `catalog`: the catalog and registry database (SQLite here) held under an exclusive lock
  for 5 s, as a stalled database server would: every commit, lease renewal and step
  record waits.

Dead workers are replaced, like a supervisor would. Every sync must succeed, and then the
three tables must equal the API's records exactly (no lost, stale or duplicate row).
The time from a worker kill to its stream advancing again goes into the tally (median and
worst).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from typing import Any

import pytest

from rawquery_workers.registry import open_registry
from rawquery_workers.registry.db import read_tx, stream_steps
from tests.distributed.conftest import Dist, Worker, Workers, workers
from tests.reliability.support import assert_exact
from tests.reliability.tally import TALLY
from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.polling import wait_for
from tests.support.redis_server import RedisServer

__all__ = ["workers"]  # a fixture of the distributed tests, used here

SEED = 20261203
FAULTS = ["child", "main", "group", "pause", "redis", "redis-empty", "catalog"]
STREAMS = {"orders": 100, "customers": 70, "refunds": 50}
LEASE = "4"


class Api:
    """Offset pages of records sorted by id, filtered by `since` (the cursor)."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.records = {
            s: [self._record(s, i, 1) for i in range(1, n + 1)] for s, n in STREAMS.items()
        }
        self.clock = 1000
        self.requests = 0
        self.lock = threading.Lock()
        for stream in STREAMS:
            server.route(f"/{stream}", self._handler(stream))

    def _record(self, stream: str, i: int, version: int) -> dict[str, Any]:
        return {"id": i, "name": f"{stream} {i}", "version": version, "updated_at": 1000 + i}

    def _handler(self, stream: str) -> Any:
        def handle(request: RecordedRequest) -> Reply:
            time.sleep(0.02)
            with self.lock:
                self.requests += 1
                since = int(request.params.get("since", 0))
                rows = [r for r in self.records[stream] if r["updated_at"] >= since]
            offset, limit = (
                int(request.params.get("offset", 0)),
                int(request.params.get("limit", 10)),
            )
            return Reply({"data": rows[offset : offset + limit]})

        return handle

    def change(self, rng: random.Random) -> None:
        """Update 3 and add 5 records per stream, all newer than anything synced."""
        with self.lock:
            for stream, rows in self.records.items():
                for row in rng.sample(rows, 3):
                    self.clock += 1
                    row.update(version=row["version"] + 1, updated_at=10_000 + self.clock)
                for _ in range(5):
                    self.clock += 1
                    new = self._record(stream, len(rows) + 1, 1)
                    new["updated_at"] = 10_000 + self.clock
                    rows.append(new)

    def spec(self) -> dict[str, Any]:
        return {
            "version": "1",
            "base_url": self.server.url,
            "auth": {"type": "bearer"},
            "streams": [
                {
                    "name": stream,
                    "endpoint": f"/{stream}",
                    "data_path": "data",
                    "primary_key": ["id"],
                    "cursor_field": "updated_at",
                    "params": {"since": "{{cursor}}"},
                    "pagination": {"type": "offset", "page_size": 10},
                }
                for stream in STREAMS
            ],
        }


def busy_steps(sync_id: str) -> dict[str, str]:
    """stream -> the worker running its current step, for the sync's busy streams."""
    with read_tx(open_registry().engine) as conn:
        rows = (
            conn.execute(stream_steps.select().where(stream_steps.c.sync_id == sync_id))
            .mappings()
            .all()
        )
    return {r["stream"]: r["worker"] for r in rows if r["worker"]}


def position(sync_id: str, stream: str) -> tuple[int, int, int, str]:
    """Where the stream stands: (segment, epoch, pages) of its job, and its run's status."""
    run = next(r for r in open_registry().get_sync(sync_id).streams if r.stream == stream)
    with read_tx(open_registry().engine) as conn:
        row = (
            conn.execute(
                stream_steps.select().where(
                    stream_steps.c.sync_id == sync_id, stream_steps.c.stream == stream
                )
            )
            .mappings()
            .first()
        )
    job = row["job"] if row else {}
    return (job.get("segment", -1), row["epoch"] if row else -1, run.pages, run.status)


def finished(sync_id: str) -> bool:
    return open_registry().get_sync(sync_id).status in ("succeeded", "failed")


def inject(fault: str, victim: Worker, redis: RedisServer, api: Api, dist: Dist) -> float | None:
    """Inject `fault`; for a worker kill, return when it happened (to time the recovery)."""
    children = victim.children()
    if fault == "child" and children:
        os.kill(children[0], signal.SIGKILL)
        return time.monotonic()
    if fault == "main":
        os.kill(victim.process.pid, signal.SIGKILL)
        return time.monotonic()
    if fault == "group":
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        return time.monotonic()
    if fault == "pause" and children:
        os.kill(children[0], signal.SIGSTOP)
        time.sleep(float(LEASE) + 2)  # past the lease: the pause itself is the fault
        os.kill(children[0], signal.SIGCONT)
        return None
    if fault == "catalog":
        database = sqlite3.connect(dist.home / "catalog.db", timeout=30)
        try:
            database.execute("BEGIN EXCLUSIVE")
            time.sleep(5)  # the stall itself is the fault
        finally:
            database.rollback()
            database.close()
        return None
    if fault in ("redis", "redis-empty"):
        redis.kill()
        time.sleep(3)  # the outage itself is the fault
        if fault == "redis-empty":
            redis.forget()
        redis.start()
    return None


@pytest.mark.timeout(900)  # nine runs, five of them waiting out a takeover
def test_a_seeded_fault_schedule_ends_exact_every_time(dist: Dist, workers: Workers) -> None:
    rng = random.Random(SEED)
    schedule = FAULTS + rng.sample(FAULTS, 2)  # every kind once, then two drawn
    rng.shuffle(schedule)
    dist.redis.stop()
    redis = RedisServer(dist.redis.port, persistent=True).start()
    dist.env["RAWQUERY_LEASE_SECONDS"] = LEASE
    try:
        with ApiServer() as server:
            api = Api(server)
            open_registry().create_connection("faulty", api.spec(), _token(), None)
            workers.start(2)
            first = dist.rq("connections", "sync", "faulty")
            assert first.returncode == 0, first.stdout + first.stderr
            for fault in schedule:
                _run(dist, workers, redis, api, rng, fault)
    finally:
        redis.close()
        dist.redis.start()


def _run(
    dist: Dist, workers: Workers, redis: RedisServer, api: Api, rng: random.Random, fault: str
) -> None:
    api.change(rng)
    started = dist.rq("connections", "sync", "faulty", "--no-wait")
    assert started.returncode == 0, started.stdout + started.stderr
    sync_id = started.stdout.strip()
    busy = wait_for(lambda: busy_steps(sync_id), 60, f"a step of sync {sync_id}", every=0.05)
    stream, node = next(iter(busy.items()))
    victim = next(w for w in workers.running if w.node == node)
    at_kill = position(sync_id, stream)
    killed = inject(fault, victim, redis, api, dist)
    TALLY.faults_injected += 1
    if killed is not None:
        workers.supervise()  # a supervisor replaces the dead worker
        wait_for(  # the stream advanced: a segment committed, taken over, or it ended
            lambda: position(sync_id, stream) != at_kill,
            120,
            f"{stream} to advance after fault {fault}",
            every=0.2,
        )
        took = time.monotonic() - killed
        TALLY.recovery_seconds.append(took)
        print(f"fault {fault} on {node} ({stream}): the stream advanced {took:.1f}s later")
        TALLY.crashes_survived += 1
    wait_for(lambda: finished(sync_id), 300, f"sync {sync_id} to end after {fault}", every=0.5)
    workers.supervise()
    assert open_registry().get_sync(sync_id).status == "succeeded", (fault, sync_id)
    for stream in STREAMS:
        assert_exact("faulty", stream, api.records[stream])


def _token() -> Any:
    from rawquery_workers.spec.credentials import Credentials
    from tests.distributed.conftest import TOKEN

    return Credentials(token=TOKEN)
