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
        "pages": run.pages,
        "error": run.error,
        "cursor": run.cursor,
        "schema_changes": list(run.schema_changes or []),
        "warnings": list(run.warnings or []),
        "started_at": _fmt_time(run.started_at),
        "finished_at": _fmt_time(run.finished_at),
    }


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
        self.state = {s: {"pages": 0, "records": 0, "waits": 0.0} for s in streams}
        self.tty = sys.stdout.isatty()
        self._live: Live | None = None
        self._last_line: dict[str, float] = {}

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
        if event.get("event") == "request" and event.get("wait"):
            for s in self.state.values():
                s["waits"] += float(event["wait"])
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
        table = Table("stream", "pages", "records", "records/s", "elapsed")
        for name, s in self.state.items():
            table.add_row(
                name,
                str(s["pages"]),
                str(s["records"]),
                f"{s['records'] / elapsed:.0f}",
                f"{elapsed:.1f}s",
            )
        return table
