"""`rq connections sync --wait` in distributed mode shows per-page progress from the workers."""

from __future__ import annotations

import re

import pytest

from rawquery_workers.registry import open_registry
from tests.distributed.conftest import TOKEN, Dist, Shop, Workers

pytestmark = [pytest.mark.distributed, pytest.mark.redis]

PAGES = 21  # 200 records in pages of 10, then the empty page that ends the stream


def test_sync_wait_shows_pages_and_rate_limit_waits_before_the_segment_commits(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    shop.add("events", 200)
    # 4 requests/s (a burst of 3): the limiter makes most of the 21 requests wait, and the
    # fetch takes ~4.5 s, long enough for several progress lines before anything commits.
    dist.connect("paced", shop.spec(rate_limit={"requests_per_second": 4}))
    workers.start(1, RAWQUERY_SEGMENT_RECORDS="1000")  # one segment: every page, then commit

    done = dist.rq("connections", "sync", "paced", "--wait")  # stdout is a pipe: plain lines

    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("events: ")]
    fetching = {
        _number(r"(\d+) pages?,", line)
        for line in lines
        if line.startswith("events: running") and ", 0 rows committed" in line
    }
    assert len(fetching - {0, PAGES}) >= 2, f"no per-page progress before the commit:\n{lines}"
    waits = [float(m[1]) for line in lines if (m := re.search(r"waited ([\d.]+) s for", line))]
    assert waits and max(waits) > 0, f"no rate-limit wait shown:\n{lines}"
    assert len(lines) < PAGES, f"a line per page is a flood:\n{lines}"
    assert f"events: succeeded, {PAGES} pages, 200 records fetched, 200 rows committed" in (
        done.stdout
    )
    assert TOKEN not in done.stdout + done.stderr

    served = shop.server.requests_to("/events")
    (run,) = open_registry().latest_stream_runs("paced", ["events"])
    assert run.progress is not None
    assert run.progress["pages"] == len(served) == PAGES
    assert run.progress["records"] == 200
    assert run.progress["waits"] > 0 and run.progress["waited"] > 0
    numbers = {k: v for k, v in run.progress.items() if k not in ("updated_at", "segment_start")}
    assert set(numbers) == {"pages", "records", "waits", "waited", "segment"}  # no URL, no secret
    assert all(
        isinstance(v, int | float)
        for v in [*numbers.values(), *run.progress["segment_start"].values()]
    )


def _number(pattern: str, line: str) -> int:
    found = re.search(pattern, line)
    assert found, line
    return int(found[1])
