"""Workers killed mid-task (SIGKILL) and the one-sync-per-connection lock."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from celery import Celery

from rawquery_workers.distributed import lease
from tests.distributed.conftest import Dist, Shop, Workers, table_ids
from tests.support.api_server import RecordedRequest, Reply
from tests.support.polling import wait_for

pytestmark = [pytest.mark.distributed, pytest.mark.redis]


def _fetching_pid(dist: Dist) -> int:
    """The pool process running an rq.fetch task right now (Celery's own bookkeeping)."""
    probe = Celery("probe", broker=dist.redis.url)
    try:

        def find() -> int | None:
            active = probe.control.inspect(timeout=1.0).active() or {}
            pids = [
                t["worker_pid"] for ts in active.values() for t in ts if t["name"] == "rq.fetch"
            ]
            return pids[0] if pids else None

        return wait_for(find, 20, "a worker running rq.fetch", every=0.2)
    finally:
        probe.close()


def test_sigkill_during_fetch_is_redelivered_and_the_table_is_exact(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    shop.add("orders", 60)
    reached = threading.Event()

    def slow_once(request: RecordedRequest, offset: int) -> Reply | None:
        if offset == 30 and not reached.is_set():
            reached.set()
            return Reply({"data": []}, delay=5.0)  # nobody reads this: its worker is killed
        return None

    shop.hooks["orders"] = slow_once
    dist.connect("crashf", shop.spec())
    workers.start(2)
    sync = dist.rq_background("connections", "sync", "crashf")

    assert reached.wait(60), "the slow page was never requested"
    os.kill(_fetching_pid(dist), signal.SIGKILL)
    out, err = sync.communicate(timeout=120)

    assert sync.returncode == 0, out + err
    assert table_ids("crashf", "orders") == list(range(1, 61))
    assert dist.status("crashf")["orders"]["rows"] == 60
    assert len(shop.server.requests_to("/orders")) > 7  # segment 1 was fetched again


@pytest.mark.parametrize("phase", ["before-commit", "after-commit"])
def test_sigkill_during_commit_is_redelivered_and_the_table_is_exact(
    dist: Dist, workers: Workers, shop: Shop, phase: str
) -> None:
    shop.add("orders", 60)
    shop.add("customers", 25)
    dist.connect("crashc", shop.spec())
    workers.start(2, RAWQUERY_TEST_CRASH_AT=f"{phase}:1")

    done = dist.rq("connections", "sync", "crashc")

    assert done.returncode == 0, done.stdout + done.stderr
    assert (dist.home / f"crashed-{phase}-1").exists(), "the crash hook never fired"
    assert table_ids("crashc", "orders") == list(range(1, 61))
    assert table_ids("crashc", "customers") == list(range(1, 26))
    status = dist.status("crashc")
    assert (status["orders"]["rows"], status["customers"]["rows"]) == (60, 25)


def test_a_second_sync_while_one_runs_is_refused_with_how_to_follow_it(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    shop.add("orders", 40)
    gate = threading.Event()

    def held(request: RecordedRequest, offset: int) -> Reply | None:
        gate.wait(30)  # the API hangs until the test has tried its second sync
        return None

    shop.hooks["orders"] = held
    dist.connect("locked", shop.spec())
    workers.start(1)
    first = dist.rq_background("connections", "sync", "locked")
    try:
        wait_for(lambda: lease.lease_owner("locked"), 30, "the first sync's lease")

        second = dist.rq("connections", "sync", "locked")

        assert second.returncode == 1
        message = second.stdout + second.stderr
        assert "already syncing" in message
        assert "rq connections status locked" in message
    finally:
        gate.set()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    assert table_ids("locked", "orders") == list(range(1, 41))
    started = time.monotonic()
    assert dist.rq("connections", "sync", "locked").returncode == 0  # free again
    assert time.monotonic() - started < 60
