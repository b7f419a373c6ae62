"""Item 2 in distributed mode: a worker's pool process SIGKILLed at random points, 22 runs.

One Redis, one pair of `rq worker` processes and one connection (two incremental streams)
serve every run; between runs the API changes (updates and new rows), so each run is an
incremental sync of a few segments of 4 records, started like `rq connections sync` starts
one (plan, claim the lease, enqueue) but in this process, to spare the CLI's start-up.
Each run kills a pool process once, at a point drawn (seeded) from:

- a crash hook (`RAWQUERY_TEST_CRASH_AT`, coordination.py) in segment 0 or 1: `fetch`
  (pages fetched, not yet staged), `transform` (records read back), `staged` (data files
  written, step not acked), `before-commit`, `after-commit` (committed, next segment not yet
  handed on). The workers arm every point; a run disarms all but one by creating the
  others' markers;
- `inspect`: the API holds a page while the test asks Celery which pool process runs
  rq.fetch and kills it.

When the kill happened, the committed cursor must not be ahead of the data; when the sync
ends (the killed task is redelivered to the restarted pool process), both tables must equal
the API's data and each cursor be the API's maximum. A worker that died is replaced like a
supervisor would.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.distributed.conftest import Dist
from tests.reliability.dist_support import (
    RqWorkers,
    SyncHandle,
    create_connection,
    cursor_behind_data,
    fetching_pid,
)
from tests.reliability.support import FakeApi, assert_exact, committed_state, items_spec
from tests.reliability.tally import TALLY
from tests.support.api_server import ApiServer
from tests.support.polling import wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.distributed, pytest.mark.redis]

RUNS = 22
HOOKS = ["fetch", "transform", "staged", "before-commit", "after-commit"]
SEGMENTS = (0, 1, 2, 3)
STREAMS = ("items", "other")
ARMED = ",".join(f"{phase}:{seg}" for phase in HOOKS for seg in SEGMENTS)


def _plan(seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    kinds = [*HOOKS, "inspect"] * 4
    rng.shuffle(kinds)
    return [(kind, rng.choice((0, 1))) for kind in kinds[:RUNS]]


class Source:
    """Both streams' records; `change()` updates a few and adds new ones (a later clock)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = itertools.count(1000)
        self.next_id = {s: itertools.count(1) for s in STREAMS}
        self.apis = {s: FakeApi([]) for s in STREAMS}
        for stream in STREAMS:
            self._add(stream, 10)

    def _add(self, stream: str, n: int) -> None:
        for _ in range(n):
            i = next(self.next_id[stream])
            self.apis[stream].records.append(
                {"id": i, "name": f"{stream}-{i}", "updated_at": next(self.clock)}
            )

    def change(self, run: int) -> None:
        for stream in STREAMS:
            records = self.apis[stream].records
            for rec in self.rng.sample(records, 2):
                rec["name"] = f"{rec['name'].split('@')[0]}@{run}"
                rec["updated_at"] = next(self.clock)
            self._add(stream, 5)

    def records(self, stream: str) -> list[dict[str, Any]]:
        return self.apis[stream].records


def _arm_only(home: Path, kind: str, segment: int) -> Path | None:
    """Create every point's marker (disarmed) but the chosen one's; returns its path."""
    for phase in HOOKS:
        for seg in SEGMENTS:
            (home / f"crashed-{phase}-{seg}").write_text("disarmed")
    if kind == "inspect":
        return None
    chosen = home / f"crashed-{kind}-{segment}"
    chosen.unlink()
    return chosen


def test_pool_processes_killed_at_random_points_22_runs(
    dist: Dist,
    rq_workers: RqWorkers,
    api_server: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dist.env["RAWQUERY_SEGMENT_RECORDS"] = "4"
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "4")
    source = Source(seed=7)
    for stream in STREAMS:
        api_server.route(f"/{stream}", source.apis[stream].handler)
    create_connection("dcrash", items_spec(api_server.url, streams=STREAMS, page_size=2))
    rq_workers.extra_env["RAWQUERY_TEST_CRASH_AT"] = ARMED
    rq_workers.start(2)
    plan = _plan(seed=7)
    assert {kind for kind, _ in plan} == {*HOOKS, "inspect"}
    survived: list[str] = []

    for run, (kind, segment) in enumerate(plan):
        if run:
            source.change(run)
        _crash_run(dist, rq_workers, source, kind, segment, run)
        survived.append(f"{kind}:{segment}")
        TALLY.crashes_survived += 1

    print(f"distributed crashes survived ({len(survived)}): {', '.join(survived)}")
    assert len(survived) >= 20


def _crash_run(
    dist: Dist, workers: RqWorkers, source: Source, kind: str, segment: int, run: int
) -> None:
    marker = _arm_only(dist.home, kind, segment)
    gate, held = threading.Event(), threading.Event()
    api = source.apis["items"]
    if kind == "inspect":
        target = api.served + 1 + segment * 2  # a page of segment 0 or 1 of items

        def hold(number: int) -> None:
            if number == target:
                held.set()
                gate.wait(30)  # the page waits while its worker is killed

        api.on_page = hold
    sync = SyncHandle(dist, "dcrash")
    try:
        if kind == "inspect":
            assert held.wait(60), f"run {run}: page {target} never requested"
            os.kill(fetching_pid(dist), signal.SIGKILL)
        else:
            wait_for(
                lambda: marker.exists() or sync.done(),
                60,
                f"run {run}: the crash at {kind}:{segment}",
                every=0.02,
            )
            assert marker.exists(), f"run {run}: {kind}:{segment} never reached"
        for stream in STREAMS:  # at the kill: the cursor is never ahead of the data
            behind = cursor_behind_data("dcrash", stream, source.records(stream))
            assert not behind, f"run {run} ({kind}): cursor of {stream} ahead of ids {behind}"
    finally:
        gate.set()
        api.on_page = None
    outcome = sync.wait()
    assert outcome == "succeeded", (
        f"run {run} ({kind}:{segment}): {sync.registry.get_sync(sync.sync_id)}"
    )
    assert not workers.supervise(), "a worker's main process died"
    for stream in STREAMS:
        records = source.records(stream)
        assert_exact("dcrash", stream, records)
        cursor = committed_state("dcrash", stream).get("rq.cursor")
        assert cursor == str(max(r["updated_at"] for r in records)), (run, stream, cursor)
