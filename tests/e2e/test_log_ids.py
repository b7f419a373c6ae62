"""An embedded sync's work runs with its connection, sync id and stream as the log ids
(observe/logs.py), also in the threads that fetch pages ahead; outside it, none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rawquery_workers.observe import logs
from rawquery_workers.registry import open_registry
from rawquery_workers.registry.connections import plan_sync
from rawquery_workers.runner.sync import run_sync
from tests.e2e.helpers import Cli
from tests.support.api_server import ApiServer, RecordedRequest, Reply


def test_every_event_of_an_embedded_sync_happens_under_its_ids(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    rows = {name: [{"id": n} for n in range(1, 26)] for name in ("users", "orders")}

    def listing(request: RecordedRequest) -> Reply:
        offset = int(request.params.get("offset", 0))
        return Reply({"data": rows[request.path.strip("/")][offset : offset + 10]})

    streams = []
    for name in rows:
        api_server.route(f"/{name}", listing)
        streams.append(
            {
                "name": name,
                "endpoint": f"/{name}",
                "data_path": "data",
                "primary_key": ["id"],
                "pagination": {"type": "offset", "page_size": 10},
            }
        )
    # concurrency 3: pages are fetched ahead in a thread pool
    spec: dict[str, Any] = {
        "version": "1",
        "base_url": api_server.url,
        "auth": {"type": "none"},
        "rate_limit": {"concurrency": 3},
        "streams": streams,
    }
    assert cli("connect", "ids_shop", "--spec", str(write_spec(spec))).code == 0
    registry = open_registry()
    sync_id, _ = plan_sync(registry, "ids_shop")
    seen: list[tuple[str, logs.LogIds]] = []

    outcome = run_sync(
        sync_id,
        registry=registry,
        on_progress=lambda e: seen.append((str(e["stream"]), logs.current_ids())),
    )

    assert outcome.ok
    assert {stream for stream, _ in seen} == {"users", "orders"}
    for stream, ids in seen:
        assert ids == logs.LogIds(connection="ids_shop", stream=stream, sync_id=sync_id)
    assert logs.current_ids() == logs.NO_IDS
