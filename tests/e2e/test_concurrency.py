"""`concurrency`: pages asked for ahead, parents requested at once, the same rows as one at a
time (INTERFACE.md, "Extensions of spec version 1").

The listing fake answers like the APIs these walks meet: an offset API that caps its page
size (Jira's `maxResults`), a page-number API (GitHub's `page`/`per_page`), with or
without a total, and past the end either an empty page or a 400 (some APIs refuse an
offset beyond the data). Each request takes a while, and the fake counts how many it is
answering at once: that is what `concurrency` changes, and what must stay within it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Cli, rows, status_streams
from tests.support.api_server import ApiServer, RecordedRequest, Reply

RECORDS = [{"id": n, "name": f"item {n}"} for n in range(1, 438)]  # 437: the last page is short


@dataclass
class Listing:
    """A paged listing of `records`; see the module docstring."""

    records: list[dict[str, Any]]
    kind: str = "offset"  # or "page"
    cap: int = 1000  # the largest page the API sends, whatever is asked
    total: bool = False  # the body reports the record count
    past_end: str = "empty"  # or "400"
    latency: float = 0.02
    in_flight: int = 0
    most: int = 0
    served: list[int] = field(default_factory=list)  # the positions asked for, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(self.latency)
            return self._page(request)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _page(self, request: RecordedRequest) -> Reply:
        size = min(int(request.params.get("limit", 100)), self.cap)
        if self.kind == "offset":
            start = int(request.params.get("offset", 0))
        else:
            start = (int(request.params["page"]) - 1) * size
        with self.lock:
            self.served.append(start)
        if start >= len(self.records) and self.past_end == "400":
            return Reply({"error": f"offset {start} is beyond the data"}, status=400)
        body: dict[str, Any] = {"data": self.records[start : start + size]}
        if self.total:
            body["total"] = len(self.records)
        return Reply(body)


def listing_spec(server: ApiServer, listing: Listing, concurrency: int, **extra: Any) -> Any:
    pagination: dict[str, Any] = {"page_size": 100}
    if listing.kind == "offset":
        pagination |= {"type": "offset", "param": "offset", "limit_param": "limit"}
    else:
        pagination |= {"type": "page_number", "param": "page", "page_size_param": "limit"}
    if listing.total:
        pagination["total_path"] = "total"
    return {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "none"},
        "concurrency": concurrency,
        "streams": [
            {
                "name": "items",
                "endpoint": "/items",
                "data_path": "data",
                "primary_key": ["id"],
                "pagination": pagination,
            }
        ],
        **extra,
    }


MATRIX = list(
    itertools.product(["offset", "page"], [False, True], [1000, 40], ["empty", "400"], [1, 8])
)


@pytest.mark.parametrize(("kind", "total", "cap", "past_end", "concurrency"), MATRIX)
def test_every_record_lands_once_whatever_runs_at_once(
    cli: Cli,
    write_spec: Callable[..., Path],
    api_server: ApiServer,
    kind: str,
    total: bool,
    cap: int,
    past_end: str,
    concurrency: int,
) -> None:
    if past_end == "400" and not total and concurrency == 1:
        pytest.skip("one at a time never asks beyond the end: the 400 case is the same")
    listing = Listing(RECORDS, kind=kind, cap=cap, total=total, past_end=past_end)
    api_server.route("/items", listing)
    path = write_spec(listing_spec(api_server, listing, concurrency))
    assert cli("connect", "shop", "--spec", str(path)).code == 0

    done = cli("connections", "sync", "shop")

    assert done.code == 0, done.out + done.err
    assert [r["id"] for r in rows("shop", "items")] == [r["id"] for r in RECORDS]
    stream = status_streams(cli, "shop")["items"]
    assert stream["status"] == "succeeded" and stream["rows"] == len(RECORDS)
    assert stream["warnings"] == []
    size = min(100, cap)
    needed = -(-len(RECORDS) // size)  # the pages that hold records
    assert listing.most <= concurrency
    if concurrency > 1 and needed > 2:
        assert listing.most > 1, "nothing ran at once"
    starts = sorted(set(listing.served))
    assert starts[:needed] == [n * size for n in range(needed)]
    if total or concurrency == 1:
        # with a total, nothing beyond it is asked for; one at a time, nothing beyond the end
        assert len(listing.served) == needed, listing.served


def test_a_page_number_walk_with_a_total_asks_for_every_page_once(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    listing = Listing(RECORDS, kind="page", total=True, latency=0.05)
    api_server.route("/items", listing)
    assert (
        cli("connect", "shop", "--spec", str(write_spec(listing_spec(api_server, listing, 8)))).code
        == 0
    )

    started = time.monotonic()
    done = cli("connections", "sync", "shop")
    took = time.monotonic() - started

    assert done.code == 0, done.out + done.err
    assert sorted(listing.served) == [n * 100 for n in range(5)]
    # 5 pages of 50 ms: the first alone, the 4 others at once
    assert listing.most == 4
    assert took < 5 * 0.05 + 2.0


def test_child_requests_run_at_once_and_land_every_parents_children(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    projects = [{"id": n, "name": f"p{n}"} for n in range(1, 41)]
    api_server.route("/projects", lambda _: Reply({"data": projects}))
    seen = Listing([], latency=0.03)

    def tasks(request: RecordedRequest) -> Reply:
        seen(request)  # counts the requests answered at once
        project = int(request.path.split("/")[2])
        page = int(request.params.get("page", 1))
        items = [{"id": project * 100 + n, "title": f"t{n}"} for n in range(1, 4 + project % 3)]
        chunk = items[(page - 1) * 2 : page * 2]  # two per page: some parents have two pages
        return Reply({"data": chunk})

    for project in projects:
        api_server.route(f"/projects/{project['id']}/tasks", tasks)
    body = {
        "version": "1",
        "base_url": api_server.url,
        "auth": {"type": "none"},
        "concurrency": 6,
        "streams": [
            {
                "name": "projects",
                "endpoint": "/projects",
                "data_path": "data",
                "primary_key": ["id"],
            },
            {
                "name": "tasks",
                "endpoint": "/projects/{{parent.id}}/tasks",
                "data_path": "data",
                "primary_key": ["id"],
                "parent": {"stream": "projects", "fields": {"project_id": "id"}},
                "pagination": {"type": "page_number", "page_size": 2, "page_size_param": "n"},
            },
        ],
    }
    assert cli("connect", "pm", "--spec", str(write_spec(body))).code == 0

    done = cli("connections", "sync", "pm")

    assert done.code == 0, done.out + done.err
    expected = sorted(
        (p["id"] * 100 + n, p["id"]) for p in projects for n in range(1, 4 + p["id"] % 3)
    )
    landed = sorted((r["id"], r["project_id"]) for r in rows("pm", "tasks"))
    assert landed == expected
    assert 1 < seen.most <= 6


def test_a_429_under_concurrency_sends_nothing_more_until_its_retry_after(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    """Pages are read in order, so nothing new is asked for while the refused one waits;
    a stream on another worker is held by the limiter (test_spec_extensions_distributed,
    and the limiters' own tests)."""
    listing = Listing([{"id": n, "name": "x"} for n in range(1, 1201)], total=True)
    other = Listing([{"id": n, "name": "o"} for n in range(1, 1201)], kind="page")
    refused: list[float] = []
    lock = threading.Lock()

    def items(request: RecordedRequest) -> Reply:
        with lock:
            first = not refused and int(request.params.get("offset", 0)) == 500
            if first:
                refused.append(request.at)
        if first:
            return Reply({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
        return listing(request)

    api_server.route("/items", items)
    api_server.route("/others", other)
    body = listing_spec(api_server, listing, 8)
    second = listing_spec(api_server, other, 8)["streams"][0]
    body["streams"].append({**second, "name": "others", "endpoint": "/others"})
    assert cli("connect", "shop", "--spec", str(write_spec(body))).code == 0

    done = cli("connections", "sync", "shop")

    assert done.code == 0, done.out + done.err
    assert len(rows("shop", "items")) == len(rows("shop", "others")) == 1200
    assert refused
    arrivals = [r.at for r in api_server.requests]
    # requests already on their way may arrive just after the 429 left; none is sent later
    # until its Retry-After is over
    held = [t - refused[0] for t in arrivals if 0.15 < t - refused[0] < 0.9]
    assert held == [], held


def test_concurrency_stays_within_the_rate_limit(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    listing = Listing([{"id": n} for n in range(1, 3001)], total=True, latency=0.02)
    api_server.route("/items", listing)
    rate = {"requests_per_second": 20, "burst": 2}
    path = write_spec(listing_spec(api_server, listing, 8, rate_limit=rate))
    assert cli("connect", "shop", "--spec", str(path)).code == 0

    done = cli("connections", "sync", "shop")

    assert done.code == 0, done.out + done.err
    arrivals = sorted(r.at for r in api_server.requests_to("/items"))
    assert len(arrivals) == 30
    for i, at in enumerate(arrivals):  # in any window of W seconds: burst + rate * W at most
        in_window = [t for t in arrivals[i:] if t - at <= 1.0]
        assert len(in_window) <= 2 + 20 * 1.0 + 1, (i, len(in_window))
    assert arrivals[-1] - arrivals[0] >= (30 - 2) / 20 - 0.1


def test_an_api_ignoring_the_offset_is_still_caught(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    api_server.route("/items", lambda _: Reply({"data": [{"id": n} for n in range(100)]}))
    listing = Listing([])
    assert (
        cli("connect", "shop", "--spec", str(write_spec(listing_spec(api_server, listing, 8)))).code
        == 0
    )

    done = cli("connections", "sync", "shop")

    assert done.code != 0
    stream = status_streams(cli, "shop")["items"]
    assert stream["status"] == "failed"
    assert "exactly the same 100 records" in stream["error"]


def test_a_sync_that_fails_mid_walk_resumes_at_the_first_page_not_committed(
    cli: Cli,
    write_spec: Callable[..., Path],
    api_server: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listing = Listing([{"id": n} for n in range(1, 2001)], total=True, latency=0.01)
    broken = {"at": 1300}

    def items(request: RecordedRequest) -> Reply:
        if int(request.params.get("offset", 0)) == broken["at"]:
            return Reply({"error": "bad request"}, status=400)
        return listing(request)

    api_server.route("/items", items)
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "500")
    assert (
        cli("connect", "shop", "--spec", str(write_spec(listing_spec(api_server, listing, 8)))).code
        == 0
    )

    failed = cli("connections", "sync", "shop")

    assert failed.code != 0
    landed = [r["id"] for r in rows("shop", "items")]
    assert landed == list(range(1, 1001))  # two segments committed, the third never was
    broken["at"] = -1
    listing.served.clear()

    done = cli("connections", "sync", "shop")

    assert done.code == 0, done.out + done.err
    assert [r["id"] for r in rows("shop", "items")] == list(range(1, 2001))
    assert min(listing.served) == 1000  # resumed where the committed state says
