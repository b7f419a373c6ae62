"""Sync state survives maintenance done by another engine (issue 21, part 2).

The other engine is pyiceberg alone, doing what Spark's `rewrite_data_files` and
`expire_snapshots(retain_last=1)` do: it rewrites every data file in a commit of its own
(no `rq.*` summary properties) and expires every other snapshot, so none of ours is left.
The next sync must still be incremental (or resume where the failed one stopped), and land
nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.sink import open_sink
from tests.e2e.helpers import Cli, rows, status_streams
from tests.support.api_server import ApiServer, RecordedRequest, Reply

LAST_SEEN = datetime(2026, 1, 1, 0, 0, 25, tzinfo=UTC)  # of record 25


def events(count: int, start: int = 1) -> list[dict[str, Any]]:
    return [
        {"id": n, "kind": "click", "updated_at": f"2026-01-{1 + n // 40:02d}T00:00:{n % 40:02d}Z"}
        for n in range(start, start + count)
    ]


def feed(server: ApiServer, records: list[dict[str, Any]], fail_at: set[int]) -> None:
    def handler(request: RecordedRequest) -> Reply:
        since = request.params.get("since")
        offset = int(request.params.get("offset", 0))
        if offset in fail_at:
            return Reply({"error": "bad request"}, status=400)
        wanted = [r for r in records if since is None or r["updated_at"] >= since]
        return Reply({"data": wanted[offset : offset + 10]})

    server.route("/events", handler)


def spec(server: ApiServer, keyed: bool) -> dict[str, Any]:
    stream: dict[str, Any] = {
        "name": "events",
        "endpoint": "/events",
        "data_path": "data",
        "params": {"since": "{{cursor}}"},
        "cursor_field": "updated_at",
        "types": {"updated_at": "timestamp"},
        "pagination": {
            "type": "offset",
            "param": "offset",
            "limit_param": "limit",
            "page_size": 10,
        },  # fmt: skip
    }
    if keyed:
        stream["primary_key"] = ["id"]
    return {"version": "1", "base_url": server.url, "auth": {"type": "none"},
            "streams": [stream]}  # fmt: skip


def other_engine_maintenance(connection: str, table: str) -> None:
    """Rewrite every file in one commit without rq's properties, then expire every snapshot
    but the new head (pyiceberg's API; what Spark's procedures do)."""
    reset_settings()
    loaded = open_sink(get_settings()).catalog.load_table(f"{connection}.{table}")
    loaded.overwrite(loaded.scan().to_arrow())
    loaded = loaded.refresh()
    head = loaded.current_snapshot()
    assert head is not None and "rq.sync_id" not in head.summary.additional_properties
    older = [s.snapshot_id for s in loaded.metadata.snapshots if s.snapshot_id != head.snapshot_id]
    loaded.maintenance.expire_snapshots().by_ids(older).commit()
    assert len(loaded.refresh().metadata.snapshots) == 1


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "append"])
def test_the_next_sync_is_still_incremental(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer, keyed: bool
) -> None:
    records = events(25)
    feed(api_server, records, fail_at=set())
    assert cli("connect", "feed", "--spec", str(write_spec(spec(api_server, keyed)))).code == 0
    assert cli("connections", "sync", "feed").code == 0
    other_engine_maintenance("feed", "events")
    records += events(5, start=26)
    api_server.requests.clear()

    done = cli("connections", "sync", "feed")

    assert done.code == 0, done.out + done.err
    sent = {r.params.get("since") for r in api_server.requests_to("/events")}
    # the saved cursor, not a full re-read
    assert {datetime.fromisoformat(s) for s in sent if s} == {LAST_SEEN} and None not in sent
    ids = [r["id"] for r in rows("feed", "events")]
    assert ids == list(range(1, 31))  # nothing twice, nothing missing
    assert status_streams(cli, "feed")["events"]["status"] == "succeeded"


def test_a_failed_sync_still_resumes_where_it_stopped(
    cli: Cli,
    write_spec: Callable[..., Path],
    api_server: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = events(60)
    fail_at = {40}
    feed(api_server, records, fail_at)
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "20")
    assert cli("connect", "feed", "--spec", str(write_spec(spec(api_server, False)))).code == 0
    assert cli("connections", "sync", "feed").code != 0  # two segments committed, then a 400
    assert [r["id"] for r in rows("feed", "events")] == list(range(1, 41))
    other_engine_maintenance("feed", "events")
    fail_at.clear()
    api_server.requests.clear()

    done = cli("connections", "sync", "feed")

    assert done.code == 0, done.out + done.err
    offsets = [int(r.params.get("offset", 0)) for r in api_server.requests_to("/events")]
    assert min(offsets) == 40  # resumed at the first page not committed
    assert [r["id"] for r in rows("feed", "events")] == list(range(1, 61))
