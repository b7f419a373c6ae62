"""Distributed syncs end to end: `rq connections sync` -> Celery workers -> Iceberg."""

from __future__ import annotations

import time

import orjson
import pytest

from rawquery_workers.registry import open_registry
from tests.distributed.conftest import (
    TOKEN,
    VALUE,
    Dist,
    Shop,
    Workers,
    redis_dump,
    table_ids,
    wait_for,
)
from tests.support.api_server import Reply

pytestmark = [pytest.mark.distributed, pytest.mark.redis]


def _slow_pages(request: object, offset: int) -> None:
    time.sleep(0.15)  # the API answering slowly (in its own thread), not synchronisation


def test_parallel_streams_one_failing_others_commit(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    shop.add("orders", 45)
    shop.add("customers", 33)
    shop.add("ghosts", 5)
    # The ghosts endpoint is gone: that stream fails, the others must still commit.
    shop.hooks["ghosts"] = lambda req, offset: Reply({"error": "not found"}, 404)
    # Slow pages, so that the two healthy streams visibly overlap on two workers.
    shop.hooks["orders"] = _slow_pages
    shop.hooks["customers"] = _slow_pages
    dist.connect("shopx", shop.spec())
    workers.start(2)

    done = dist.rq("connections", "sync", "shopx")

    assert done.returncode == 1, done.stdout + done.stderr
    assert table_ids("shopx", "orders") == list(range(1, 46))
    assert table_ids("shopx", "customers") == list(range(1, 34))
    status = dist.status("shopx")
    assert status["orders"]["status"] == "succeeded"
    assert status["orders"]["rows"] == 45
    assert status["customers"]["status"] == "succeeded"
    assert status["customers"]["rows"] == 33
    assert status["ghosts"]["status"] == "failed"
    assert "404" in status["ghosts"]["error"]
    orders = [r.at for r in shop.server.requests_to("/orders")]
    customers = [r.at for r in shop.server.requests_to("/customers")]
    assert min(orders) < max(customers) and min(customers) < max(orders), "ran one by one"
    assert TOKEN not in done.stdout + done.stderr


def test_no_wait_prints_the_sync_id_and_redis_never_holds_secrets_or_records(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    shop.add("orders", 60)
    shop.add("customers", 40)
    dist.connect("audit", shop.spec())
    workers.start(2)

    done = dist.rq("connections", "sync", "audit", "--no-wait")

    assert done.returncode == 0, done.stderr
    sync_id = done.stdout.strip()
    registry = open_registry()
    assert registry.get_sync(sync_id).connection == "audit"
    client = dist.client()
    dumps: list[bytes] = []

    def finished() -> bool:
        dumps.append(redis_dump(client))
        return registry.get_sync(sync_id).status in ("succeeded", "failed")

    wait_for(finished, 90, "the sync to finish", every=0.05)
    dumps.append(redis_dump(client))
    assert registry.get_sync(sync_id).status == "succeeded"
    assert len(dumps) >= 3
    assert any(b"rq.fetch" in d or b"rq.commit" in d for d in dumps), "saw no task message"
    for dump in dumps:
        assert TOKEN.encode() not in dump
        assert VALUE.encode() not in dump
    assert table_ids("audit", "orders") == list(range(1, 61))
    payload = orjson.loads(dist.rq("connections", "status", "audit", "--json").stdout)
    assert {s["status"] for s in payload["streams"]} == {"succeeded"}
