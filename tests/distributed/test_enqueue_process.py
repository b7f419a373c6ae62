"""`rq connections sync --no-wait` as its own process, the way a person (and bench (g)) runs
it: the same answer as in-process, and the registry's database closed when it exits even
though the process skips the final garbage collections (`cli/startup.py`)."""

from __future__ import annotations

import orjson
import pytest

from rawquery_workers.registry import dispose_engines, open_registry
from tests.distributed.conftest import Dist, Shop

pytestmark = [pytest.mark.distributed, pytest.mark.redis]


def test_no_wait_process_enqueues_and_closes_the_registry(dist: Dist, shop: Shop) -> None:
    shop.add("orders", 5)
    dist.connect("shop", shop.spec())
    dispose_engines()  # this process's connection would keep SQLite's write-ahead log open

    done = dist.rq("connections", "sync", "shop", "--no-wait")

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert not (dist.home / "catalog.db-wal").exists()
    sync_id = done.stdout.strip()
    assert open_registry().get_sync(sync_id).status == "queued"
    message = orjson.loads(dist.client().rpop("celery") or b"")
    assert message["headers"]["task"] == "rq.start_sync"
    assert message["headers"]["argsrepr"] == repr((sync_id,))


def test_no_wait_process_refused_while_another_sync_holds_the_lease(dist: Dist, shop: Shop) -> None:
    shop.add("orders", 5)
    dist.connect("shop", shop.spec())
    first = dist.rq("connections", "sync", "shop", "--no-wait")

    second = dist.rq("connections", "sync", "shop", "--no-wait")

    assert second.returncode == 1
    assert second.stdout == ""
    assert second.stderr.startswith("error: connection shop is already syncing (sync ")
    assert first.stdout.strip() in second.stderr
