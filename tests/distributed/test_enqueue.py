"""`rq connections sync --no-wait` in distributed mode: what it loads and what it sends.

No workers: the sync stays queued, its message waits in Redis to be read here.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest

from rawquery_workers.registry import open_registry
from tests.distributed.conftest import Dist, Shop

pytestmark = [pytest.mark.distributed, pytest.mark.redis]

# What the workers need and the command does not: each costs 0.1-0.5 s of start-up.
HEAVY = (
    "pyiceberg",
    "pyarrow",
    "duckdb",
    "httpx",
    "celery.schedules",
    "rawquery_workers.runner.pipeline",
    "rawquery_workers.distributed.tasks",
    # Only for tables and live progress, which --no-wait never shows (~15 ms).
    "rich",
)
NO_WAIT = """
import sys
from rawquery_workers.cli.app import main
try:
    main(["connections", "sync", "shop", "--no-wait"])
except SystemExit as exit:
    print(exit.code)
print([name for name in {heavy!r} if name in sys.modules])
"""


def _python(dist: Dist, code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code], env=dist.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _queued(dist: Dist) -> dict[str, Any]:
    """The one task message waiting in Celery's default queue, without its per-send ids."""
    client = dist.client()
    assert client.llen("celery") == 1
    message = orjson.loads(client.rpop("celery") or b"")
    for name in ("id", "root_id", "origin"):
        message["headers"].pop(name)
    for name in ("correlation_id", "reply_to", "delivery_tag"):
        message["properties"].pop(name)
    return message


def test_no_wait_enqueues_without_loading_the_pipeline(dist: Dist, shop: Shop) -> None:
    shop.add("orders", 5)
    dist.connect("shop", shop.spec())

    sync_id, code, loaded = _python(dist, NO_WAIT.format(heavy=HEAVY))

    assert (code, loaded) == ("0", "[]")
    assert open_registry().get_sync(sync_id).status == "queued"
    assert _queued(dist)["headers"]["task"] == "rq.start_sync"


def test_enqueue_sync_sends_what_the_task_itself_sends(dist: Dist) -> None:
    """By task name from `celery_app` (no tasks imported) or by the task's own `delay`: the
    workers receive the same message."""
    _python(
        dist,
        "from rawquery_workers.distributed.celery_app import enqueue_sync; enqueue_sync('s1')",
    )
    by_name = _queued(dist)
    _python(
        dist, "from rawquery_workers.distributed.tasks import start_sync; start_sync.delay('s1')"
    )
    assert by_name == _queued(dist)
    assert by_name["headers"]["ignore_result"] is True
