"""Fencing and the one lock of every mode (issue: coordination you can trust).

A sync stopped (SIGSTOP) inside a commit, after its checks, for longer than its lease: a
newer `--full-refresh` sync takes the lease and lands the API's current data; when the old
one wakes up, its commit must fail instead of writing stale rows over the new ones, and its
state must not become the stream's. Tried with a Celery worker and with an embedded sync.
And an embedded and a distributed sync of one connection never run at once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from rawquery_workers.registry import open_registry
from tests.distributed.conftest import RQ, Dist, Shop, Workers
from tests.support.api_server import RecordedRequest, Reply
from tests.support.polling import wait_for

ROWS = 60  # 3 segments of 20 (RAWQUERY_SEGMENT_RECORDS in the dist fixture)
LEASE = "2"


def versioned(shop: Shop, version: dict[str, int]) -> None:
    shop.add("orders", ROWS)

    def serve(request: RecordedRequest, offset: int) -> Reply:
        page = shop.rows["orders"][offset : offset + 10]
        return Reply({"data": [{**row, "version": version["now"]} for row in page]})

    shop.hooks["orders"] = serve


def landed_versions(connection: str) -> dict[int, int]:
    from rawquery_workers.settings import get_settings
    from rawquery_workers.sink import open_sink

    table = open_sink(get_settings()).scan_arrow(connection, "orders").read_all()
    return dict(
        zip(table.column("id").to_pylist(), table.column("version").to_pylist(), strict=True)
    )


def paused_pid(home: Path) -> int:
    marker = home / "paused-commit-1"
    wait_for(marker.exists, 120, "a process to pause inside its commit of segment 1")
    pid = int(wait_for(lambda: marker.read_text().strip(), 10, "the paused pid"))
    wait_for(lambda: _state(pid) == "T", 10, f"process {pid} to stop")
    return pid


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def lease_expired(connection: str) -> bool:
    import time

    held = open_registry().leases.holder(connection)
    return held is None or held.expires_at < time.time()


def run_embedded(dist: Dist, *args: str, **env: str) -> subprocess.Popen[str]:
    plain = {k: v for k, v in dist.env.items() if k != "RAWQUERY_REDIS_URL"}
    return subprocess.Popen(
        [RQ, *args], env={**plain, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def old_run_error(sync_id: str) -> str:
    run = next(r for r in open_registry().get_sync(sync_id).streams if r.stream == "orders")
    return run.error or ""


@pytest.fixture
def short_lease(dist: Dist, monkeypatch: pytest.MonkeyPatch) -> None:
    dist.env["RAWQUERY_LEASE_SECONDS"] = LEASE
    monkeypatch.setenv("RAWQUERY_LEASE_SECONDS", LEASE)


def test_a_worker_paused_past_its_lease_never_writes_over_newer_data(
    dist: Dist, workers: Workers, shop: Shop, short_lease: None
) -> None:
    version = {"now": 1}
    versioned(shop, version)
    dist.connect("fenced", shop.spec())
    workers.start(1, RAWQUERY_TEST_PAUSE_AT="commit:1")
    old = dist.rq_background("connections", "sync", "fenced", "--no-wait")
    old_id = old.communicate(timeout=60)[0].strip()
    pid = paused_pid(dist.home)
    workers.start(1)  # the other worker runs the newer sync
    try:
        wait_for(lambda: lease_expired("fenced"), 30, "the paused sync's lease to run out")
        version["now"] = 2

        newer = dist.rq("connections", "sync", "fenced", "--full-refresh")

        assert newer.returncode == 0, newer.stdout + newer.stderr
        assert landed_versions("fenced") == {i: 2 for i in range(1, ROWS + 1)}
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: "stops without writing" in old_run_error(old_id), 60, "the stale commit")

    assert landed_versions("fenced") == {i: 2 for i in range(1, ROWS + 1)}
    again = dist.rq("connections", "sync", "fenced")  # the newer sync's state is the stream's
    assert again.returncode == 0, again.stdout + again.stderr
    assert landed_versions("fenced") == {i: 2 for i in range(1, ROWS + 1)}
    assert dist.status("fenced")["orders"]["rows"] == ROWS


def test_an_embedded_sync_paused_past_its_lease_never_writes_over_newer_data(
    dist: Dist, shop: Shop, short_lease: None
) -> None:
    version = {"now": 1}
    versioned(shop, version)
    dist.connect("fenced", shop.spec())
    old = run_embedded(dist, "connections", "sync", "fenced", RAWQUERY_TEST_PAUSE_AT="commit:1")
    pid = paused_pid(dist.home)
    try:
        wait_for(lambda: lease_expired("fenced"), 30, "the paused sync's lease to run out")
        version["now"] = 2
        newer = run_embedded(dist, "connections", "sync", "fenced", "--full-refresh")
        out, err = newer.communicate(timeout=120)

        assert newer.returncode == 0, out + err
        assert landed_versions("fenced") == {i: 2 for i in range(1, ROWS + 1)}
    finally:
        os.kill(pid, signal.SIGCONT)
    out, err = old.communicate(timeout=120)

    assert old.returncode == 1, out + err
    old_id = re.search(r"sync ([0-9a-f]{32}) of fenced", out)
    assert old_id is not None, out + err
    assert "stops without writing" in old_run_error(old_id.group(1))
    assert landed_versions("fenced") == {i: 2 for i in range(1, ROWS + 1)}
    again = run_embedded(dist, "connections", "sync", "fenced")
    assert again.wait(timeout=120) == 0
    assert landed_versions("fenced") == {i: 2 for i in range(1, ROWS + 1)}


@pytest.mark.parametrize("first_mode", ["embedded", "distributed"])
def test_an_embedded_and_a_distributed_sync_never_run_at_once(
    dist: Dist, workers: Workers, shop: Shop, first_mode: str
) -> None:
    shop.add("orders", ROWS)
    gate = threading.Event()

    def held(request: RecordedRequest, offset: int) -> Any:
        gate.wait(60)  # the API hangs until the test has tried the other mode
        return None

    shop.hooks["orders"] = held
    dist.connect("both", shop.spec())
    workers.start(1)
    if first_mode == "embedded":
        first = run_embedded(dist, "connections", "sync", "both")
    else:
        first = dist.rq_background("connections", "sync", "both")
    try:
        wait_for(lambda: open_registry().leases.holder("both"), 60, "the first sync's lease")
        if first_mode == "embedded":
            second = dist.rq("connections", "sync", "both")
            code, message = second.returncode, second.stdout + second.stderr
        else:
            other = run_embedded(dist, "connections", "sync", "both")
            out, err = other.communicate(timeout=60)
            code, message = other.returncode, out + err

        assert code == 1
        assert "already syncing" in message
    finally:
        gate.set()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    from tests.distributed.conftest import table_ids

    assert table_ids("both", "orders") == list(range(1, ROWS + 1))  # once each, not twice
