"""A dead worker's stream is taken over by a surviving worker within two minutes.

The worker running a stream's fetch is killed (SIGKILL of its main process, of its whole
process group, or a deploy's SIGTERM whose grace period runs out after 2 s), mid-fetch, on a
slow API. Its message stays unacknowledged in Redis for the visibility timeout (an hour);
the other worker's reaper must see the dead worker stop beating and hand the stream on from
its last committed segment. Every row lands exactly once, and the takeover time is printed.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from rawquery_workers.registry import open_registry
from rawquery_workers.registry.db import read_tx, stream_steps
from tests.distributed.conftest import Dist, Shop, Workers, shop, table_ids, workers
from tests.reliability.tally import TALLY
from tests.support.api_server import RecordedRequest, Reply
from tests.support.polling import wait_for

ROWS = 200  # 10 segments of 20, 20 pages of 10 at 0.15 s each
TAKEOVER_LIMIT = 120.0
__all__ = ["shop", "workers"]  # fixtures of the distributed tests, used here


def step_worker(sync_id: str) -> str | None:
    with read_tx(open_registry().engine) as conn:
        row = (
            conn.execute(stream_steps.select().where(stream_steps.c.sync_id == sync_id))
            .mappings()
            .first()
        )
    return row["worker"] if row else None


def pages_served(shop: Shop) -> int:
    return len(shop.server.requests_to("/orders"))


def kill(process: Any, how: str) -> None:
    if how == "main":
        os.kill(process.pid, signal.SIGKILL)
    elif how == "group":
        os.killpg(process.pid, signal.SIGKILL)
    else:  # a deploy: SIGTERM, then SIGKILL when the 2 s grace period is over
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=2)
        except Exception:
            os.killpg(process.pid, signal.SIGKILL)
    if how != "main":
        process.wait()


@pytest.mark.parametrize("how", ["main", "group", "grace-2s"])
def test_a_dead_worker_s_stream_is_taken_over_within_two_minutes(
    dist: Dist, workers: Workers, shop: Shop, how: str
) -> None:
    shop.add("orders", ROWS)

    def slow(request: RecordedRequest, offset: int) -> Reply | None:
        time.sleep(0.15)  # a real API's latency: the fetch is under way when the kill comes
        return None

    shop.hooks["orders"] = slow
    dist.connect("dead", shop.spec())
    first, second = workers.start(2)
    started = dist.rq("connections", "sync", "dead", "--no-wait")
    assert started.returncode == 0, started.stderr
    sync_id = started.stdout.strip()
    node = wait_for(lambda: step_worker(sync_id), 60, "a worker to run the stream")
    wait_for(lambda: pages_served(shop) >= 4, 60, "the fetch to be under way")
    victim, survivor = (first, second) if node == first.node else (second, first)

    kill(victim.process, how)
    killed = time.monotonic()
    served = pages_served(shop)
    wait_for(
        lambda: step_worker(sync_id) == survivor.node and pages_served(shop) > served + 1,
        TAKEOVER_LIMIT,
        "the surviving worker to take the stream over",
        every=0.5,
    )
    took = time.monotonic() - killed
    TALLY.faults_injected += 1
    TALLY.crashes_survived += 1
    TALLY.recovery_seconds.append(took)

    wait_for(
        lambda: open_registry().get_sync(sync_id).status in ("succeeded", "failed"),
        180,
        "the sync to finish",
        every=0.5,
    )
    assert open_registry().get_sync(sync_id).status == "succeeded"
    assert table_ids("dead", "orders") == list(range(1, ROWS + 1))  # each row once
    assert dist.status("dead")["orders"]["rows"] == ROWS
    assert took < TAKEOVER_LIMIT


def test_a_worker_dead_in_the_start_of_a_sync_has_its_start_delivered_again(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    """The worker running `rq.start_sync` dies after starting the first of three streams
    (paused there, then its process group killed): its message waits an hour in Redis. The
    survivor's reaper sees the dead starter and delivers the start again, which starts the
    two others; every row lands once."""
    names = ["orders", "customers", "invoices"]
    for name in names:
        shop.add(name, 30)
    dist.connect("starts", shop.spec(names))
    first, second = workers.start(2, RAWQUERY_TEST_PAUSE_AT="start:0")
    started = dist.rq("connections", "sync", "starts", "--no-wait")
    assert started.returncode == 0, started.stderr
    marker = dist.home / "paused-start-0"
    wait_for(marker.exists, 60, "the start to pause after its first stream")
    pid = int(wait_for(lambda: marker.read_text() or None, 10, "the paused pid"))
    victim = first if pid in first.children() or pid == first.process.pid else second
    killed = time.monotonic()
    kill(victim.process, "group")

    sync_id = started.stdout.strip()
    wait_for(
        lambda: open_registry().get_sync(sync_id).status in ("succeeded", "failed"),
        TAKEOVER_LIMIT + 60,
        "the sync to end",
        every=0.5,
    )
    took = time.monotonic() - killed
    print(f"a start whose worker died: the sync ended {took:.1f}s after the kill")
    assert open_registry().get_sync(sync_id).status == "succeeded"
    for name in names:
        assert table_ids("starts", name) == list(range(1, 31))
    assert took < TAKEOVER_LIMIT + 30
