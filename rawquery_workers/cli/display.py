"""How commands show things to a person: rich tables in a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

console = Console()


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
            row["name"],
            ", ".join(row["streams"]),
            row["schedule"] or "-",
            row["base_url"],
            row["updated_at"][:19],
        )
    console.print(table)


def status_table(name: str, schedule: str | None, streams: list[dict[str, Any]]) -> None:
    table = Table(
        "stream",
        "status",
        "rows",
        "cursor",
        "started",
        "finished",
        "notes",
        title=f"{name}" + (f" (schedule {schedule} UTC)" if schedule else ""),
    )
    for s in streams:
        notes = [s["error"]] if s["error"] else []
        notes += s["warnings"] + s["schema_changes"]
        table.add_row(
            s["name"],
            s["status"],
            str(s["rows"] or 0),
            s["cursor"] or "-",
            (s["started_at"] or "-")[:19],
            (s["finished_at"] or "-")[:19],
            "\n".join(notes),
        )
    console.print(table)


def sync_summary(outcome: Any) -> None:
    table = Table(
        "stream",
        "status",
        "rows",
        "pages",
        "seconds",
        "notes",
        title=f"sync {outcome.sync_id} of {outcome.connection}",
    )
    for s in outcome.streams:
        notes = ([s.error] if s.error else []) + list(s.warnings) + list(s.schema_changes)
        table.add_row(
            s.name, s.status, str(s.rows), str(s.pages), f"{s.seconds:.2f}", "\n".join(notes)
        )
    console.print(table)


class Progress:
    """Live per-stream progress of an in-process sync (pages, records, rate, elapsed)."""

    def __init__(self, streams: list[str]) -> None:
        self.started = time.monotonic()
        self.state = {s: {"pages": 0, "records": 0} for s in streams}
        self.tty = sys.stdout.isatty()
        self._live: Live | None = None
        self._last_line: dict[str, float] = {}
        self.waited = 0.0  # seconds spent waiting for the connection's rate limit

    def __enter__(self) -> Progress:
        if self.tty:
            self._live = Live(self._table(), console=console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)

    def update(self, event: dict[str, Any]) -> None:
        stream = event.get("stream")
        if event.get("event") == "request":
            self.waited += float(event.get("rate_limit_wait") or 0.0)
        if event.get("event") != "page" or stream not in self.state:
            return
        s = self.state[stream]
        s["pages"] += 1
        s["records"] += int(event.get("records", 0))
        if self._live is not None:
            self._live.update(self._table())
            return
        now = time.monotonic()
        if now - self._last_line.get(stream, 0.0) >= 1.0:
            self._last_line[stream] = now
            typer.echo(
                f"{stream}: {s['pages']} pages, {s['records']} records, {now - self.started:.1f}s"
            )

    def _table(self) -> Table:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        table = Table(
            "stream",
            "pages",
            "records",
            "records/s",
            "elapsed",
            caption=f"rate-limit waits: {self.waited:.1f}s",
        )
        for name, s in self.state.items():
            table.add_row(
                name,
                str(s["pages"]),
                str(s["records"]),
                f"{s['records'] / elapsed:.0f}",
                f"{elapsed:.1f}s",
            )
        return table


FOLLOW_POLL_SECONDS = 0.5
LOST_AFTER_SECONDS = 30.0


def follow_sync(registry: Any, sync_id: str) -> Any:
    """Distributed mode: show a sync's per-stream progress from the registry until it ends
    (rich in a terminal, a line per change otherwise), then return its `SyncOutcome`.

    A sync whose lease stays gone for LOST_AFTER_SECONDS while the registry still shows it
    unfinished was lost (Redis restarted, every worker died): it is marked failed.
    """
    from rawquery_workers import coordination

    follower = _Follower(registry, sync_id)
    live = Live(follower.table(), console=console, refresh_per_second=4) if follower.tty else None
    with live if live is not None else _nothing():
        while not follower.poll():
            if live is not None:
                live.update(follower.table())
            coordination.check_lost(registry, sync_id, LOST_AFTER_SECONDS, follower.lost_since)
            time.sleep(FOLLOW_POLL_SECONDS)  # polling the durable registry; nothing to wait on
        if live is not None:
            live.update(follower.table())
    return follower.outcome()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _Follower:
    """What `follow_sync` has seen of one sync so far."""

    def __init__(self, registry: Any, sync_id: str) -> None:
        self.registry = registry
        self.sync_id = sync_id
        self.tty = sys.stdout.isatty()
        self.started = time.monotonic()
        self.sync = registry.get_sync(sync_id)
        self.lost_since: dict[str, float] = {}
        self._printed: dict[str, tuple[Any, ...]] = {}

    def poll(self) -> bool:
        """Read the registry again; print plain lines for changes; True once it ended."""
        self.sync = self.registry.get_sync(self.sync_id)
        if not self.tty:
            for run in self.sync.streams:
                seen = (run.status, run.pages, run.rows)
                if self._printed.get(run.stream) != seen:
                    self._printed[run.stream] = seen
                    typer.echo(self._line(run))
        return self.sync.status in ("succeeded", "failed")

    def _line(self, run: Any) -> str:
        elapsed = self._elapsed(run)
        rate = run.rows / elapsed if elapsed > 0 else 0.0
        return (
            f"{run.stream}: {run.status}, {run.pages} pages, {run.rows} rows, "
            f"{rate:.0f} rows/s, {elapsed:.1f}s"
        )

    def _elapsed(self, run: Any) -> float:
        if run.started_at is None:
            return 0.0
        from datetime import UTC, datetime

        end = run.finished_at or datetime.now(UTC)
        started = run.started_at
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        return max((end - started).total_seconds(), 0.0)

    def table(self) -> Table:
        table = Table("stream", "status", "pages", "rows", "rows/s", "elapsed")
        for run in self.sync.streams:
            elapsed = self._elapsed(run)
            rate = run.rows / elapsed if elapsed > 0 else 0.0
            table.add_row(
                run.stream,
                run.status,
                str(run.pages),
                str(run.rows),
                f"{rate:.0f}",
                f"{elapsed:.1f}s",
            )
        return table

    def outcome(self) -> Any:
        from rawquery_workers.sync import StreamOutcome, SyncOutcome

        streams = [
            StreamOutcome(
                run.stream,
                run.status,
                rows=run.rows,
                pages=run.pages,
                seconds=self._elapsed(run),
                error=run.error,
                cursor=run.cursor,
                warnings=list(run.warnings or []),
                schema_changes=list(run.schema_changes or []),
            )
            for run in self.sync.streams
        ]
        return SyncOutcome(self.sync_id, self.sync.connection, streams)
