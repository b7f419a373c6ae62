"""Schedules: fire_due against a real registry and Redis with an injected clock, and one real
`rq beat` subprocess firing a '* * * * *' schedule."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from rawquery_workers.distributed import lease
from rawquery_workers.distributed.beat import due_slot, fire_due
from rawquery_workers.registry import open_registry
from tests.distributed.conftest import RQ, Dist, Shop, Workers, table_ids
from tests.support.polling import wait_for

pytestmark = [pytest.mark.distributed, pytest.mark.redis]


def _scheduled(connection: str) -> list[str]:
    from sqlalchemy import select

    from rawquery_workers.registry.db import read_tx, syncs

    query = select(syncs.c.id).where(
        syncs.c.connection == connection, syncs.c.trigger == "schedule"
    )
    with read_tx(open_registry().engine) as conn:
        return [row[0] for row in conn.execute(query)]


def test_due_slot_collapses_missed_slots_and_waits_for_the_next() -> None:
    created = datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)
    assert due_slot("* * * * *", None, created, created + timedelta(seconds=10)) is None
    slot = due_slot("* * * * *", None, created, created + timedelta(minutes=5))
    assert slot == datetime(2024, 5, 1, 12, 5, tzinfo=UTC)
    assert due_slot("* * * * *", slot, created, slot + timedelta(seconds=59)) is None


def test_two_schedulers_fire_a_slot_once_and_new_connections_are_honoured(
    dist: Dist, shop: Shop
) -> None:
    shop.add("orders", 5)
    fired: list[str] = []
    beat_a, beat_b = open_registry(), open_registry()  # two beat processes' registries
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    assert fire_due(beat_a, start, fired.append) == []
    dist.connect("later", shop.spec(), schedule="* * * * *")  # added after "beat" started
    slot_time = start + timedelta(minutes=2)

    assert fire_due(beat_a, slot_time, fired.append) == ["later"]
    assert fire_due(beat_b, slot_time, fired.append) == []
    assert fire_due(beat_a, slot_time + timedelta(seconds=59), fired.append) == []
    assert len(fired) == 1 and len(_scheduled("later")) == 1


def test_a_schedule_firing_mid_sync_is_skipped_with_a_note_in_status(
    dist: Dist, shop: Shop
) -> None:
    shop.add("orders", 5)
    dist.connect("busy", shop.spec(), schedule="* * * * *")
    registry = open_registry()
    running = registry.create_sync("busy", ["orders"])
    lease.claim(registry, "busy", running)  # a sync holds the connection
    fired: list[str] = []

    assert fire_due(registry, datetime.now(UTC) + timedelta(minutes=2), fired.append) == []

    assert fired == []
    skipped = registry.get_sync(_scheduled("busy")[0])
    assert skipped.status == "failed" and "skipped" in (skipped.error or "")
    shown = dist.rq("connections", "status", "busy")
    assert "skipped" in shown.stdout and "already syncing" in shown.stdout


def test_rq_beat_fires_a_cron_schedule(dist: Dist, workers: Workers, shop: Shop) -> None:
    shop.add("orders", 25)
    workers.start(1)
    log = open(dist.home / "beat.log", "wb")  # noqa: SIM115
    beat = subprocess.Popen(
        [RQ, "beat", "--schedule", str(dist.home / "beat-schedule")],
        env=dist.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        dist.connect("cron", shop.spec(), schedule="* * * * *")  # after beat started

        def succeeded() -> bool:
            ids = _scheduled("cron")
            return bool(ids) and open_registry().get_sync(ids[0]).status == "succeeded"

        wait_for(succeeded, 75, "the scheduled sync to run", every=0.5)
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=15)
        log.close()
    assert table_ids("cron", "orders") == list(range(1, 26))
