"""The distributed half of the reliability suite: real `rq worker` processes (Celery, prefork)
on the private Redis of tests/distributed/conftest.py, with DEBUG logs and, when asked, a
short HTTP read timeout (so an API answer slower than it is a timeout)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery

from rawquery_workers.registry import open_registry
from rawquery_workers.spec.credentials import Credentials
from tests.distributed.conftest import Dist, Workers
from tests.reliability.support import committed_state, table_rows
from tests.support.polling import wait_for

# `rq worker` exactly as in production (its logging set up from RAWQUERY_LOG_LEVEL), with the
# HTTP client's default read timeout lowered first when RQ_TEST_READ_TIMEOUT is set.
_BOOT = """\
import os, sys
if os.environ.get("RQ_TEST_READ_TIMEOUT"):
    import rawquery_workers.http.client as http
    http.build_client.__kwdefaults__["read_timeout"] = float(os.environ["RQ_TEST_READ_TIMEOUT"])
from rawquery_workers.cli.app import main
main()
"""


@dataclass
class RqWorkers(Workers):
    """`Workers` (start, supervise, stop_all) spawning `rq worker --loglevel=DEBUG`."""

    read_timeout: float | None = None

    def command(self, name: str) -> list[str]:
        return [
            sys.executable, "-c", _BOOT, "worker", "--concurrency", "1", "-P", "prefork",
            "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel=DEBUG",
        ]  # fmt: skip

    def own_env(self) -> dict[str, str]:
        extra = {"RAWQUERY_LOG_LEVEL": "DEBUG"}
        if self.read_timeout:
            extra["RQ_TEST_READ_TIMEOUT"] = str(self.read_timeout)
        return extra


@pytest.fixture
def rq_workers(dist: Dist) -> Iterator[RqWorkers]:
    pool = RqWorkers(dist)
    yield pool
    pool.stop_all()


def create_connection(name: str, spec: dict[str, Any], creds: Credentials | None = None) -> None:
    open_registry().create_connection(name, spec, creds or Credentials(), None)


def fetching_pid(dist: Dist, timeout: float = 20) -> int:
    """The pool process running an rq.fetch task now (Celery's own bookkeeping)."""
    probe = Celery("probe", broker=dist.redis.url)
    try:

        def find() -> int | None:
            active = probe.control.inspect(timeout=0.5).active() or {}
            pids = [
                t["worker_pid"] for ts in active.values() for t in ts if t["name"] == "rq.fetch"
            ]
            return pids[0] if pids else None

        return wait_for(find, timeout, "a worker running rq.fetch", every=0.05)
    finally:
        probe.close()


def cursor_behind_data(connection: str, stream: str, records: list[dict[str, Any]]) -> list[int]:
    """Ids of records at or before the committed cursor that the table lacks (or holds in an
    older version): what a sync resuming from that cursor would never fetch again. The state
    is read before the rows, so a commit in between only makes the table newer."""
    cursor = committed_state(connection, stream).get("rq.cursor") or ""
    if not cursor:
        return []
    rows = {r["id"]: r for r in table_rows(connection, stream)}
    return [
        r["id"]
        for r in records
        if r["updated_at"] <= int(cursor)
        and rows.get(r["id"], {}).get("updated_at") != r["updated_at"]
    ]


class SyncHandle:
    """A distributed sync started in this process the way `rq connections sync` starts one
    (plan it, claim the connection's lease, enqueue rq.start_sync), without paying the
    CLI's start-up for each of many short runs."""

    def __init__(self, dist: Dist, connection: str) -> None:
        from rawquery_workers.distributed.lease import claim
        from rawquery_workers.registry.connections import plan_sync
        from rawquery_workers.settings import reset_settings

        reset_settings()
        self.registry = open_registry()
        self.sync_id, _ = plan_sync(self.registry, connection)
        claim(self.registry, connection, self.sync_id)
        sender = Celery("sender", broker=dist.redis.url)
        try:
            sender.send_task("rq.start_sync", args=[self.sync_id])
        finally:
            sender.close()

    def status(self) -> str:
        return self.registry.get_sync(self.sync_id).status

    def done(self) -> bool:
        return self.status() not in ("queued", "running")

    def wait(self, timeout: float = 120) -> str:
        wait_for(self.done, timeout, f"sync {self.sync_id} to end", every=0.05)
        return self.status()
