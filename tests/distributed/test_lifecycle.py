"""A connection's lifecycle while its syncs run: a killed embedded sync is recognised, a
delete is refused (or, with --force, cancels the sync cleanly), and a sync that cannot be
handed to the workers leaves nothing behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from rawquery_workers.registry import open_registry
from tests.distributed.conftest import Dist, Shop, Workers, table_ids
from tests.distributed.test_fencing import run_embedded
from tests.support.api_server import RecordedRequest
from tests.support.polling import wait_for
from tests.support.redis_server import RedisServer

ROWS = 30


def hanging(shop: Shop, gate: threading.Event) -> None:
    shop.add("orders", ROWS)

    def held(request: RecordedRequest, offset: int) -> Any:
        gate.wait(60)  # the API hangs until the test lets it go
        return None

    shop.hooks["orders"] = held


def test_a_killed_embedded_sync_is_marked_and_the_next_one_runs_at_once(
    dist: Dist, shop: Shop
) -> None:
    gate = threading.Event()
    hanging(shop, gate)
    dist.connect("killed", shop.spec())
    first = run_embedded(dist, "connections", "sync", "killed")
    wait_for(lambda: open_registry().leases.holder("killed"), 60, "the sync's lease")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    gate.set()

    status = dist.status("killed")["orders"]

    assert status["status"] == "failed"
    assert f"/{first.pid}) is gone" in status["error"]
    again = run_embedded(dist, "connections", "sync", "killed")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, out + err  # not refused: the dead holder let go
    assert table_ids("killed", "orders") == list(range(1, ROWS + 1))


def test_delete_during_a_sync_is_refused_and_force_cancels_it_cleanly(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    gate = threading.Event()
    hanging(shop, gate)
    dist.connect("busy", shop.spec())
    [worker] = workers.start(1)
    running = dist.rq("connections", "sync", "busy", "--no-wait")
    assert running.returncode == 0, running.stderr
    sync_id = running.stdout.strip()
    wait_for(lambda: open_registry().get_sync(sync_id).status == "running", 60, "the sync")

    refused = dist.rq("connections", "delete", "busy")

    assert refused.returncode == 1
    assert "already syncing" in refused.stderr and "--force" in refused.stderr
    forced = dist.rq("connections", "delete", "busy", "--force")
    assert forced.returncode == 0, forced.stderr
    gate.set()
    dist.connect("busy", shop.spec())  # the same name again, at once
    again = dist.rq("connections", "sync", "busy")
    assert again.returncode == 0, again.stdout + again.stderr
    assert table_ids("busy", "orders") == list(range(1, ROWS + 1))
    log = worker.log.read_text()
    assert "Traceback" not in log, log[-3000:]


def test_redis_down_when_a_sync_starts_is_a_clear_error_that_stores_nothing(
    dist: Dist, shop: Shop
) -> None:
    shop.add("orders", ROWS)
    dist.connect("noredis", shop.spec())
    dist.redis.stop()

    done = dist.rq("connections", "sync", "noredis", timeout=120)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Redis at redis://127.0.0.1" in done.stderr and "nothing was queued" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    registry = open_registry()
    assert registry.leases.holder("noredis") is None
    assert all(run.status == "never" for run in registry.latest_stream_runs("noredis", ["orders"]))


@pytest.mark.parametrize("mode", ["embedded", "distributed"])
def test_a_running_sync_keeps_the_spec_it_started_with(
    dist: Dist, workers: Workers, shop: Shop, tmp_path: Path, mode: str
) -> None:
    gate = threading.Event()
    hanging(shop, gate)
    shop.add("customers", ROWS)
    dist.connect("changing", shop.spec())
    if mode == "distributed":
        workers.start(1)
        first = dist.rq_background("connections", "sync", "changing")
    else:
        first = run_embedded(dist, "connections", "sync", "changing")
    try:
        wait_for(lambda: open_registry().leases.holder("changing"), 60, "the sync's lease")
        smaller = tmp_path / "smaller.json"
        smaller.write_bytes(orjson.dumps(shop.spec(["customers"])))  # orders is gone

        updated = dist.rq("connections", "update", "changing", "--spec", str(smaller))

        assert updated.returncode == 0, updated.stderr
    finally:
        gate.set()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err  # both streams of the spec it started with
    assert table_ids("changing", "orders") == list(range(1, ROWS + 1))
    assert table_ids("changing", "customers") == list(range(1, ROWS + 1))
    assert "internal error" not in out + err
    assert list(dist.status("changing")) == ["customers"]  # the next syncs use the new spec


def test_a_redis_outage_with_persistence_delays_a_sync_and_fails_nothing(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    """Redis SIGKILLed mid-sync and back 5 s later with its append-only file (as in
    production): the sync is delayed, not failed, and lands every row once."""
    persistent = RedisServer(dist.redis.port, persistent=True)
    dist.redis.stop()
    persistent.start()
    try:
        shop.add("orders", 120)
        served = threading.Event()

        def slow(request: RecordedRequest, offset: int) -> Any:
            if offset >= 50:
                served.set()  # past the first segments: some data is committed
            time.sleep(0.1)
            return None

        shop.hooks["orders"] = slow
        dist.connect("blip", shop.spec())
        workers.start(2)
        first = dist.rq_background("connections", "sync", "blip")
        assert served.wait(60)
        persistent.kill()
        time.sleep(5)  # the outage itself is what is under test
        persistent.start()
        out, err = first.communicate(timeout=240)

        assert first.returncode == 0, out + err
        assert table_ids("blip", "orders") == list(range(1, 121))
        assert dist.status("blip")["orders"]["status"] == "succeeded"
    finally:
        persistent.close()
        dist.redis.start()


@pytest.mark.parametrize("when", ["mid-stream", "before-start"])
def test_a_redis_back_without_its_data_delays_a_sync_and_fails_nothing(
    dist: Dist, workers: Workers, shop: Shop, when: str
) -> None:
    """Redis SIGKILLed and back 5 s later EMPTY (no persistence): the queued steps, and a
    start no worker took yet, are lost with it. The reapers see a new Redis incarnation and
    publish them again; the sync is delayed, not failed, and lands every row once."""
    names = ["orders", "customers", "invoices", "refunds"]
    for name in names:
        shop.add(name, 120 if name == "orders" else 40)
    served = threading.Event()

    def slow(request: RecordedRequest, offset: int) -> Any:
        if offset >= 50:
            served.set()  # past the first segments: some data is committed
        time.sleep(0.1)
        return None

    for name in names:
        shop.hooks[name] = slow
    dist.connect("blip", shop.spec(names))
    if when == "mid-stream":
        # one worker, one process: while it runs a step, the other streams' steps wait in
        # Redis' queue (one more is prefetched), and go with its data
        workers.start(1)
        first = dist.rq_background("connections", "sync", "blip")
        assert served.wait(60)
        wait_for(lambda: dist.client().llen("celery") > 0, 30, "steps waiting in the queue")
    else:  # the start waits in the queue: no worker runs yet
        first = dist.rq_background("connections", "sync", "blip")
        wait_for(lambda: _queued_start(dist), 60, "the start to be queued")
    dist.redis.kill()
    time.sleep(5)  # the outage itself is what is under test
    dist.redis.start()
    if when == "before-start":
        workers.start(2)

    def ended() -> bool:
        workers.supervise()  # a worker the outage killed comes back, as under systemd
        return first.poll() is not None

    wait_for(ended, 240, "the sync to end", every=0.5)
    out, err = first.communicate()

    assert first.returncode == 0, out + err
    for name in names:
        assert table_ids("blip", name) == list(range(1, 121 if name == "orders" else 41))
    assert {s["status"] for s in dist.status("blip").values()} == {"succeeded"}


def _queued_start(dist: Dist) -> bool:
    """The sync is planned and its start message waits in Redis' queue."""
    sync = open_registry().running_sync("blip", include_queued=True)
    return sync is not None and sync.status == "queued" and bool(dist.client().llen("celery"))
