"""Progress counts, the worker's throttled writes, the rate window and how progress is shown:
driven by hand with a fake clock (no I/O, no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from rawquery_workers.cli import display
from rawquery_workers.cli.display import PlainLines, StreamView, progress_line, progress_table
from rawquery_workers.runner.progress import ProgressWriter, RateWindow, StreamCounts, segment_start


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def page(records: int, stream: str = "orders") -> dict[str, Any]:
    return {"event": "page", "stream": stream, "records": records, "url": "https://x/?k=SECRET"}


def request(wait: float, stream: str = "orders") -> dict[str, Any]:
    return {"event": "request", "stream": stream, "rate_limit_wait": wait, "status": 200}


# --- counts -------------------------------------------------------------------------------


def test_counts_take_pages_records_and_only_the_requests_that_waited() -> None:
    counts = StreamCounts()
    for event in [request(0.0), page(10), request(0.25), page(10), request(0.5), page(3)]:
        counts = counts.add(event)
    counts = counts.add({"event": "retry", "wait": 9.0}).add({"event": "other"})

    assert counts == StreamCounts(pages=3, records=23, waits=2, waited=0.75)
    assert counts.to_dict() == {"pages": 3, "records": 23, "waits": 2, "waited": 0.75}
    assert StreamCounts.from_dict(counts.to_dict()) == counts
    assert StreamCounts.from_dict(None) == StreamCounts() == StreamCounts.from_dict({})


def test_a_fetch_adds_to_the_earlier_segments_and_a_redelivered_one_starts_its_segment_again() -> (
    None
):
    after_segment_0 = {
        **StreamCounts(5, 50, 2, 1.0).to_dict(),
        "segment": 0,
        "segment_start": StreamCounts().to_dict(),
    }
    assert segment_start(None, 0) == StreamCounts()
    assert segment_start(after_segment_0, 1) == StreamCounts(5, 50, 2, 1.0)
    # Segment 1's fetch died after 3 pages; its redelivery starts again from segment 0's end.
    died_in_segment_1 = {
        **StreamCounts(8, 80, 4, 2.0).to_dict(),
        "segment": 1,
        "segment_start": StreamCounts(5, 50, 2, 1.0).to_dict(),
    }
    assert segment_start(died_in_segment_1, 1) == StreamCounts(5, 50, 2, 1.0)


def test_the_writer_writes_at_once_then_at_most_every_half_second() -> None:
    clock, written = Clock(), []
    writer = ProgressWriter(None, 0, written.append, every=0.5, clock=clock)

    writer(page(10))  # the first change: written at once
    clock.now += 0.2
    writer(request(0.3))
    writer(page(10))
    writer(request(0.0))  # changes nothing
    clock.now += 0.3
    writer(page(10))

    assert [w["pages"] for w in written] == [1, 3]
    final = writer.stored()
    assert {k: final[k] for k in ("pages", "records", "waits", "waited", "segment")} == {
        "pages": 3,
        "records": 30,
        "waits": 1,
        "waited": 0.3,
        "segment": 0,
    }
    assert final["segment_start"] == StreamCounts().to_dict()
    assert datetime.fromisoformat(final["updated_at"]).tzinfo is not None
    assert "SECRET" not in repr(written) + repr(final)  # only numbers from the events


def test_the_writer_of_a_later_segment_continues_the_totals() -> None:
    first = ProgressWriter(None, 0, lambda p: None)
    for _ in range(2):
        first(page(10))
    second = ProgressWriter(first.stored(), 1, lambda p: None)
    second(page(4))

    assert second.counts == StreamCounts(pages=3, records=24)
    assert second.stored()["segment_start"] == {"pages": 2, "records": 20, "waits": 0, "waited": 0}


# --- the rate window ------------------------------------------------------------------------


def test_rate_is_records_per_second_over_the_last_window_and_falls_to_zero_when_stalled() -> None:
    clock = Clock()
    window = RateWindow(seconds=5.0, clock=clock)
    assert window.rate() == 0.0
    window.observe(10)
    assert window.rate() == 0.0  # one page is no rate yet
    for count in range(20, 410, 10):  # 10 records every 0.25 s = 40 records/s
        clock.now += 0.25
        window.observe(count)
    assert window.rate() == pytest.approx(40.0, rel=0.06)
    clock.now += 6.0  # nothing new for longer than the window
    assert window.rate() == 0.0


def test_rate_of_samples_closer_than_the_resolution_is_merged_not_lost() -> None:
    clock = Clock()
    window = RateWindow(seconds=5.0, clock=clock)
    window.observe(0)
    for count in range(1, 1001):  # a thousand pages within 10 ms
        clock.now += 0.00001
        window.observe(count)
    clock.now += 1.0
    assert window.rate() == pytest.approx(1000 / 1.01, rel=0.01)
    assert len(window._samples) <= 2


# --- how it is shown ------------------------------------------------------------------------


def test_a_line_shows_status_pages_records_committed_rate_waits_and_elapsed() -> None:
    view = StreamView("orders", StreamCounts(12, 120, 9, 3.24), 38.4, 4.06, "running", 100)
    assert progress_line(view) == (
        "orders: running, 12 pages, 120 records fetched, 100 rows committed, 38 records/s, "
        "waited 3.2 s for the rate limit (9 requests), 4.1 s"
    )
    embedded = StreamView("orders", StreamCounts(1, 1, 0, 0.0), 0.0, 0.0)
    assert progress_line(embedded) == "orders: 1 page, 1 record fetched, 0 records/s, 0.0 s"
    assert display.running_note(StreamCounts(3, 30, 1, 0.5)) == (
        "so far 3 pages, 30 records fetched, waited 0.5 s for the rate limit (1 request)"
    )


def _rendered(views: list[StreamView]) -> str:
    console = Console(record=True, width=160)
    console.print(progress_table(views))
    return console.export_text()


def test_the_table_has_status_and_committed_columns_only_for_a_distributed_sync() -> None:
    counts = StreamCounts(12, 120, 9, 3.24)
    distributed = _rendered([StreamView("orders", counts, 38.4, 4.06, "running", 100)])
    embedded = _rendered([StreamView("orders", counts, 38.4, 4.06)])

    for heading in ("pages", "records", "records/s", "rate-limit wait", "elapsed"):
        assert heading in distributed and heading in embedded
    assert "status" in distributed and "committed" in distributed and "running" in distributed
    assert "status" not in embedded and "committed" not in embedded
    assert "3.2 s (9)" in distributed and "3.2 s (9)" in embedded


def test_plain_lines_print_changes_at_most_once_a_second_and_a_new_status_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = Clock()
    lines = PlainLines(clock=clock)

    def show(pages: int, status: str = "running", flush: bool = False) -> None:
        lines.show(
            [StreamView("a", StreamCounts(pages, pages * 10), 0.0, 0.0, status, 0)], flush=flush
        )

    show(0, "queued")
    show(0, "queued")  # no change
    show(1)  # a new status: at once
    clock.now += 0.5
    show(2)  # too soon
    clock.now += 0.5
    show(3)
    show(4, "succeeded")
    clock.now += 0.1
    show(4, "succeeded")
    show(5, "succeeded", flush=True)

    printed = [line.split(",")[:2] for line in capsys.readouterr().out.splitlines()]
    assert printed == [
        ["a: queued", " 0 pages"],
        ["a: running", " 1 page"],
        ["a: running", " 3 pages"],
        ["a: succeeded", " 4 pages"],
        ["a: succeeded", " 5 pages"],
    ]


def test_embedded_progress_counts_waits_per_stream_and_prints_each_streams_last_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with display.Progress(["orders", "customers"]) as progress:
        for event in [request(0.4), page(10), request(0.0), page(10), request(0.0), page(0)]:
            progress.update(event)
        progress.update(request(0.2, "customers"))
        progress.update(page(5, "customers"))
        progress.update(page(5, "ghosts"))  # not a stream of this sync: ignored

    out = capsys.readouterr().out.splitlines()
    # A stream's first change at once (here its first request waiting for the limiter), then
    # at most a line a second, and its last figures when it ends.
    assert [line.split(", waited")[0] for line in out] == [
        "orders: 0 pages, 0 records fetched, 0 records/s",
        "orders: 3 pages, 20 records fetched, " + out[1].split(", ")[2],
        "customers: 0 pages, 0 records fetched, 0 records/s",
        "customers: 1 page, 5 records fetched, " + out[3].split(", ")[2],
    ]
    assert "waited 0.4 s for the rate limit (1 request)" in out[1]
    assert "waited 0.2 s for the rate limit (1 request)" in out[3]
    views = {v.stream: v.counts for v in progress.views()}
    assert views == {"orders": StreamCounts(3, 20, 1, 0.4), "customers": StreamCounts(1, 5, 1, 0.2)}


def test_the_follower_shows_a_runs_progress_and_falls_back_to_its_pages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=3)
    running = SimpleNamespace(
        stream="orders", status="running", rows=20, pages=2, started_at=started,
        finished_at=None, progress={**StreamCounts(4, 40, 3, 1.5).to_dict(), "segment": 1},
    )  # fmt: skip
    queued = SimpleNamespace(
        stream="customers", status="queued", rows=0, pages=0, started_at=None,
        finished_at=None, progress=None,
    )  # fmt: skip
    sync = SimpleNamespace(status="running", connection="c", streams=(running, queued))
    registry = SimpleNamespace(get_sync=lambda sync_id: sync)

    follower = display._Follower(registry, "s1")
    assert follower.poll() is False

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("orders: running, 4 pages, 40 records fetched, 20 rows committed")
    assert "waited 1.5 s for the rate limit (3 requests), 3.0 s" in out[0]
    assert out[1].startswith("customers: queued, 0 pages, 0 records fetched, 0 rows committed")


def test_status_notes_what_a_running_stream_has_fetched_so_far(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    console = Console(record=True, width=200)
    monkeypatch.setattr(display, "console", console)
    run = SimpleNamespace(
        stream="orders", status="running", rows=20, pages=2, error=None, cursor=None,
        schema_changes=(), warnings=(), started_at=datetime.now(UTC), finished_at=None,
        progress={**StreamCounts(4, 40, 3, 1.5).to_dict(), "segment": 1},
    )  # fmt: skip

    display.status_table("c", None, [run])

    assert "so far 4 pages, 40 records fetched, waited 1.5 s for the rate limit (3 requests)" in (
        console.export_text()
    )
