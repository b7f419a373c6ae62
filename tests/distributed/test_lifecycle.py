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
