"""Records changed while a sync walks, or between a crash and its resume, are picked up by
the next sync: the saved timestamp cursor is never later than the walk's start (minus
`cursor_lookback`). The API's `updated_at` is real wall-clock time, set when a record is
edited, as a real service does; the edits happen while the sync is between pages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Cli, rows, status_streams
from tests.support.api_server import ApiServer, RecordedRequest, Reply


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Tickets:
    """`GET /tickets?offset&limit&updated_since`, sorted by id; `on_page[offset]` runs
    before that page is answered (an edit made by someone else mid-sync)."""

    def __init__(self, server: ApiServer) -> None:
        old = datetime.now(UTC) - timedelta(hours=1)
        self.records = {
            i: {"id": i, "title": f"v1 {i}", "updated_at": (old + timedelta(minutes=i)).isoformat()}
            for i in range(1, 7)
        }
        self.on_page: dict[int, Callable[[], None]] = {}
        self.fail_from: int | None = None
        server.route("/tickets", self.answer)

    def edit(self, tid: int, title: str) -> None:
        self.records[tid] = {"id": tid, "title": title, "updated_at": now()}

    def answer(self, request: RecordedRequest) -> Reply:
        offset, limit = int(request.params["offset"]), int(request.params["limit"])
        if self.fail_from is not None and offset >= self.fail_from:
            return Reply({"error": "maintenance"}, 400)
        if hook := self.on_page.pop(offset, None):
            hook()
        since = request.params.get("updated_since")
        listing = [
            r
            for _, r in sorted(self.records.items())
            if since is None or instant(r["updated_at"]) >= instant(since)
        ]
        return Reply({"data": listing[offset : offset + limit]})


def spec(server: ApiServer, **stream: Any) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "bearer"},
        "rate_limit": {"max_retries": 0},
        "streams": [
            {
                "name": "tickets",
                "endpoint": "/tickets",
                "data_path": "data",
                "primary_key": ["id"],
                "cursor_field": "updated_at",
                "params": {"updated_since": "{{cursor}}"},
                "types": {"updated_at": "timestamp"},
                "pagination": {"type": "offset", "limit_param": "limit", "page_size": 2},
                **stream,
            }
        ],
    }


def titles(name: str) -> dict[int, str]:
    return {r["id"]: r["title"] for r in rows(name, "tickets")}


def test_an_edit_behind_the_walk_is_picked_up_by_the_next_sync(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    tickets = Tickets(api_server)
    # While page 2 is asked for: ticket 1 (already read) is edited, then ticket 6 (not yet
    # read), so the walk sees a cursor later than an edit it missed.
    tickets.on_page[2] = lambda: (tickets.edit(1, "v2 1"), tickets.edit(6, "v2 6"))
    assert (
        cli("connect", "t", "--spec", str(write_spec(spec(api_server))), "--auth-token", "x").code
        == 0
    )

    assert cli("connections", "sync", "t").code == 0
    assert titles("t")[1] == "v1 1" and titles("t")[6] == "v2 6"
    cursor = instant(status_streams(cli, "t")["tickets"]["cursor"])
    assert cursor < instant(tickets.records[1]["updated_at"])  # the walk's start, not t6's

    assert cli("connections", "sync", "t").code == 0
    assert titles("t") == {i: ("v2" if i in (1, 6) else "v1") + f" {i}" for i in range(1, 7)}


def test_an_edit_between_a_crash_and_the_resume_is_picked_up(
    cli: Cli,
    write_spec: Callable[..., Path],
    api_server: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "2")  # a commit per page: the failed walk
    tickets = Tickets(api_server)  # keeps its first pages
    tickets.fail_from = 4
    assert (
        cli("connect", "t", "--spec", str(write_spec(spec(api_server))), "--auth-token", "x").code
        == 0
    )
    assert cli("connections", "sync", "t").code == 1
    assert sorted(titles("t")) == [1, 2, 3, 4]
    tickets.fail_from = None
    tickets.edit(1, "v2 1")  # after the crash, before the resume
    tickets.edit(5, "v2 5")  # still ahead of the resumed walk

    assert cli("connections", "sync", "t").code == 0  # resumes at offset 4
    assert titles("t")[1] == "v1 1" and titles("t")[5] == "v2 5"
    cursor = instant(status_streams(cli, "t")["tickets"]["cursor"])
    assert cursor < instant(tickets.records[1]["updated_at"])  # the failed walk's start

    assert cli("connections", "sync", "t").code == 0
    assert titles("t")[1] == "v2 1"


@pytest.mark.parametrize("keyed", [True, False])
def test_lookback_rereads_late_records_and_never_lands_one_twice(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer, keyed: bool
) -> None:
    tickets = Tickets(api_server)
    body = spec(api_server, cursor_lookback=7200)
    if not keyed:
        del body["streams"][0]["primary_key"]
    assert cli("connect", "t", "--spec", str(write_spec(body)), "--auth-token", "x").code == 0
    assert cli("connections", "sync", "t").code == 0
    # A record that arrives late: written now with an updated_at before the saved cursor.
    late = (datetime.now(UTC) - timedelta(minutes=90)).isoformat()
    tickets.records[7] = {"id": 7, "title": "late", "updated_at": late}

    for _ in range(2):  # the lookback re-reads all seven every time
        assert cli("connections", "sync", "t").code == 0
        landed = sorted(r["id"] for r in rows("t", "tickets"))
        assert landed == list(range(1, 8)), landed
    sent = [r.params.get("updated_since") for r in api_server.requests_to("/tickets")]
    saved = instant(status_streams(cli, "t")["tickets"]["cursor"])
    assert instant(sent[-1]) <= saved - timedelta(seconds=7200)
