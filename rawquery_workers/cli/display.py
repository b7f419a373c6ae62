"""How commands show things to a person: rich tables in a terminal, plain lines otherwise."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rawquery_workers.runner.progress import RateWindow, StreamCounts

console = Console()


def plain(value: object, *, fold: bool = False) -> Text:
    """`value` shown literally: Rich reads `[...]` in a str as markup, and data or an API's
    message (`created[gte]`, `[/quote]`) must neither lose text nor crash the print.
    `fold`: a word too long for its column goes on over the next lines instead of being
    cut with an ellipsis (error messages, whose URLs and quotes must be read whole)."""
    return Text("" if value is None else str(value), overflow="fold" if fold else None)


def _fmt_time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def run_as_dict(run: Any) -> dict[str, Any]:
    """A stream run as INTERFACE.md's `status --json` shape."""
    return {
        "name": run.stream,
        "status": run.status,
        "rows": run.rows,
        "error": run.error,
        "cursor": run.cursor,
        "schema_changes": list(run.schema_changes or []),
        "warnings": list(run.warnings or []),
        "started_at": _fmt_time(run.started_at),
        "finished_at": _fmt_time(run.finished_at),
    }


def refused_as_dict(sync: Any) -> dict[str, Any]:
    """A sync refused or skipped before it started (e.g. a schedule firing mid-sync)."""
    return {
        "sync_id": sync.id,
        "trigger": sync.trigger,
        "created_at": _fmt_time(sync.created_at),
        "error": sync.error,
    }


def skipped_lines(skipped: list[dict[str, Any]]) -> None:
    for s in skipped:
        typer.echo(
            f"note: {s['trigger']} sync {s['sync_id']} at {s['created_at'][:19]}: {s['error']}"
        )


def connections_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        typer.echo("no connections yet; add one with `rq connect NAME --spec FILE`")
        return
    table = Table("name", "streams", "schedule", "base url", "updated")
    for row in rows:
        table.add_row(
            plain(row["name"]),
            plain(", ".join(row["streams"])),
            plain(row["schedule"] or "-"),
            plain(row["base_url"]),
            plain(row["updated_at"][:19]),
        )
    console.print(table)


def status_table(name: str, schedule: str | None, runs: list[Any]) -> None:
    """The latest run of each stream; a running one with what it has fetched so far."""
    table = Table(
        "stream",
        "status",
        "rows",
        "cursor",
        "started",
        "finished",
        "notes",
        title=escape(name + (f" (schedule {schedule} UTC)" if schedule else "")),
    )
    for run in runs:
        s = run_as_dict(run)
        notes = [s["error"]] if s["error"] else []
        if run.status == "running" and run.progress:
            notes.append(running_note(run_counts(run)))
        notes += s["warnings"] + s["schema_changes"]
        cells = [
            s["name"],
            s["status"],
            str(s["rows"] or 0),
            s["cursor"] or "-",
            (s["started_at"] or "-")[:19],
            (s["finished_at"] or "-")[:19],
        ]
        table.add_row(*map(plain, cells), plain("\n".join(notes), fold=True))
    console.print(table)


def sync_summary(outcome: Any) -> None:
    table = Table(
        "stream",
        "status",
        "rows",
        "pages",
        "seconds",
        "notes",
        title=escape(f"sync {outcome.sync_id} of {outcome.connection}"),
    )
    for s in outcome.streams:
        notes = ([s.error] if s.error else []) + list(s.warnings) + list(s.schema_changes)
        cells = [s.name, s.status, s.rows, s.pages, f"{s.seconds:.2f}"]
        table.add_row(*map(plain, cells), plain("\n".join(notes), fold=True))
    console.print(table)
    for line in getattr(outcome, "maintained", ()):
        console.print(plain(f"maintenance: {line}"))


# --- a sync's live progress, the same in both modes --------------------------------------

LINE_SECONDS = 1.0  # plain lines: at most one per stream this often (a new status at once)


@dataclass(frozen=True, slots=True)
class StreamView:
    """One stream's progress as it is shown, whichever mode the sync runs in."""

    stream: str
    counts: StreamCounts
    rate: float  # records per second lately (on average, once the stream is done)
    elapsed: float
    status: str | None = None  # distributed mode: the stream run's status
    committed: int | None = None  # distributed mode: rows committed so far


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def fetched_text(counts: StreamCounts) -> str:
    return f"{_count(counts.pages, 'page')}, {_count(counts.records, 'record')} fetched"


def running_note(counts: StreamCounts) -> str:
    """`rq connections status`'s note on a running stream."""
    waited = f", {wait_text(counts)}" if counts.waits else ""
    return f"so far {fetched_text(counts)}{waited}"


def wait_text(counts: StreamCounts) -> str:
    return f"waited {counts.waited:.1f} s for the rate limit ({_count(counts.waits, 'request')})"


def progress_line(view: StreamView) -> str:
    """`orders: running, 12 pages, 120 records fetched, 100 rows committed, 38 records/s,
    waited 3.2 s for the rate limit (12 requests), 4.1 s` (the wait only if there was one)."""
    parts = [view.status] if view.status else []
    parts.append(fetched_text(view.counts))
    if view.committed is not None:
        parts.append(f"{_count(view.committed, 'row')} committed")
    parts.append(f"{view.rate:.0f} records/s")
    if view.counts.waits:
        parts.append(wait_text(view.counts))
    parts.append(f"{view.elapsed:.1f} s")
    return f"{view.stream}: {', '.join(parts)}"


def _wait_cell(counts: StreamCounts) -> str:
    return f"{counts.waited:.1f} s ({counts.waits})" if counts.waits else "-"


# (heading, cell, shown for an in-process sync too): status and committed rows are known
# only to the registry, i.e. in distributed mode.
_COLUMNS: list[tuple[str, Callable[[StreamView], str], bool]] = [
    ("stream", lambda v: v.stream, True),
    ("status", lambda v: v.status or "-", False),
    ("pages", lambda v: str(v.counts.pages), True),
    ("records", lambda v: str(v.counts.records), True),
    ("committed", lambda v: str(v.committed or 0), False),
    ("records/s", lambda v: f"{v.rate:.0f}", True),
    ("rate-limit wait", lambda v: _wait_cell(v.counts), True),
    ("elapsed", lambda v: f"{v.elapsed:.1f} s", True),
]


def progress_table(views: list[StreamView]) -> Table:
    """The rich table of `progress_line`'s figures, a row per stream."""
    distributed = any(v.status is not None for v in views)
    columns = [(name, cell) for name, cell, always in _COLUMNS if always or distributed]
    table = Table(*(name for name, _ in columns))
    for view in views:
        table.add_row(*(plain(cell(view)) for _, cell in columns))
    return table


class PlainLines:
    """Progress as plain lines (stdout is not a terminal): a stream's `progress_line` when
    its figures changed, at most every LINE_SECONDS per stream, a new status at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._shown: dict[str, tuple[Any, ...]] = {}
        self._at: dict[str, float] = {}

    def show(self, views: list[StreamView], *, flush: bool = False) -> None:
        """Print the lines due; `flush`: every change not printed yet, whatever the time."""
        now = self._clock()
        for view in views:
            figures = (view.status, view.counts, view.committed)
            shown = self._shown.get(view.stream)
            if figures == shown:
                continue
            new_status = shown is None or shown[0] != view.status
            if flush or new_status or now - self._at[view.stream] >= LINE_SECONDS:
                self._shown[view.stream], self._at[view.stream] = figures, now
                typer.echo(progress_line(view))


def _rate(counts: StreamCounts, window: RateWindow, elapsed: float, done: bool) -> float:
    if not done:
        return window.rate()
    return counts.records / elapsed if elapsed > 0 else 0.0


class Progress:
    """Live per-stream progress of an in-process sync from its `on_progress` events (pages,
    requests' rate-limit waits), shown as `follow_sync` shows a distributed one."""

    def __init__(self, streams: list[str]) -> None:
        self.tty = sys.stdout.isatty()
        self._seen = {s: _Seen() for s in streams}
        self._current: str | None = None
        self._lines = PlainLines()
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.tty:
            self._live = Live(self, console=console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self._seen:
            self._ended(name)
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(None, None, None)

    def _ended(self, stream: str) -> None:
        seen = self._seen[stream]
        seen.done = True
        if self._live is None and seen.first is not None:
            self._lines.show([seen.view(stream)], flush=True)

    def update(self, event: dict[str, Any]) -> None:
        stream = str(event.get("stream"))
        seen = self._seen.get(stream)
        if seen is None:
            return
        if stream != self._current:  # streams run one after another: the previous one ended
            if self._current is not None:
                self._ended(self._current)
            self._current = stream
        if seen.add(event) and self._live is None:
            self._lines.show([seen.view(stream)])

    def views(self) -> list[StreamView]:
        return [seen.view(name) for name, seen in self._seen.items()]

    def __rich__(self) -> Table:  # rendered again at each refresh: elapsed keeps ticking
        return progress_table(self.views())


class _Seen:
    """One stream's events so far, in embedded mode."""

    def __init__(self) -> None:
        self.counts = StreamCounts()
        self.window = RateWindow()
        self.first: float | None = None
        self.last = 0.0
        self.done = False

    def add(self, event: dict[str, Any]) -> bool:
        """Count an event; True if the figures changed."""
        self.last = time.monotonic()
        self.first = self.last if self.first is None else self.first
        counts = self.counts.add(event)
        changed, self.counts = counts != self.counts, counts
        self.window.observe(counts.records)
        return changed

    def view(self, name: str) -> StreamView:
        if self.first is None:
            return StreamView(name, self.counts, 0.0, 0.0)
        elapsed = (self.last if self.done else time.monotonic()) - self.first
        rate = _rate(self.counts, self.window, elapsed, self.done)
        return StreamView(name, self.counts, rate, elapsed)


FOLLOW_POLL_SECONDS = 0.5
LOST_AFTER_SECONDS = 30.0


def follow_sync(registry: Any, sync_id: str) -> Any:
    """Distributed mode: show a sync's per-stream progress from the registry until it ends
    (the stream runs' `progress`, written by the workers per page: see `progress.py`), then
    return its `SyncOutcome`.

    A sync whose lease stays gone for LOST_AFTER_SECONDS while the registry still shows it
    unfinished was lost (Redis restarted, every worker died): it is marked failed.
    """
    from rawquery_workers.distributed.lease import check_lost

    follower = _Follower(registry, sync_id)
    live = Live(follower, console=console, refresh_per_second=4) if follower.tty else None
    with live if live is not None else contextlib.nullcontext():
        while not follower.poll():
            check_lost(registry, sync_id, LOST_AFTER_SECONDS, follower.lost_since)
            time.sleep(FOLLOW_POLL_SECONDS)  # polling the durable registry; nothing to wait on
        if live is not None:
            live.refresh()
    return follower.outcome()


def run_counts(run: Any) -> StreamCounts:
    """A stream run's counts: its `progress`, or the pages of a run that has none."""
    return StreamCounts.from_dict(run.progress) if run.progress else StreamCounts(run.pages)


def _run_elapsed(run: Any) -> float:
    if run.started_at is None:
        return 0.0
    end = run.finished_at or datetime.now(UTC)
    return max(float((end - run.started_at).total_seconds()), 0.0)


class _Follower:
    """What `follow_sync` has seen of one sync so far."""

    def __init__(self, registry: Any, sync_id: str) -> None:
        self.registry = registry
        self.sync_id = sync_id
        self.tty = sys.stdout.isatty()
        self.sync = registry.get_sync(sync_id)
        self.lost_since: dict[str, float] = {}
        self._windows: dict[str, RateWindow] = {}
        self._views: list[StreamView] = []
        self._lines = PlainLines()

    def poll(self) -> bool:
        """Read the registry again; print plain lines for changes; True once it ended."""
        self.sync = self.registry.get_sync(self.sync_id)
        self._views = [self._view(run) for run in self.sync.streams]
        if not self.tty:
            self._lines.show(self._views)
        return self.sync.status in ("succeeded", "failed")

    def _view(self, run: Any) -> StreamView:
        counts = run_counts(run)
        window = self._windows.setdefault(run.stream, RateWindow())
        window.observe(counts.records)
        elapsed = _run_elapsed(run)
        done = run.status not in ("queued", "running")
        rate = _rate(counts, window, elapsed, done)
        return StreamView(run.stream, counts, rate, elapsed, run.status, run.rows)

    def __rich__(self) -> Table:
        return progress_table(self._views)

    def outcome(self) -> Any:
        from rawquery_workers.runner.runs import outcome_of
        from rawquery_workers.runner.sync import SyncOutcome

        streams = [
            dataclasses.replace(outcome_of(run), seconds=_run_elapsed(run))
            for run in self.sync.streams
        ]
        return SyncOutcome(self.sync_id, self.sync.connection, streams)
