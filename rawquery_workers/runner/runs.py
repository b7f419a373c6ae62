"""One stream run's lifecycle, the same for both runners (embedded and Celery).

    run = StreamRun(registry, sync_id, stream)
    run.start()                      status running, started_at
    run.record(staged, rows, pages)  after each committed segment: counts, warnings, changes
    run.fail(message)  /  run.succeed(cursor)
    end_sync_if_last(registry, sync_id)   the last stream to be final ends the sync

The registry holds the record; `outcome_of` turns it into what a user sees, so both
runners report a stream the same way. `failure_text` is the one error format. The rows
committed and the durations of ended streams and syncs become metrics here
(observe/metrics.py), for both runners.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rawquery_workers.errors import RawqueryError
from rawquery_workers.observe import metrics

if TYPE_CHECKING:
    from rawquery_workers.registry import Registry
    from rawquery_workers.registry.records import StreamRunRecord, SyncRecord
    from rawquery_workers.spec.models import Stream


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """A stream's part of a finished sync, as shown to the user."""

    name: str
    status: str
    rows: int = 0
    pages: int = 0
    seconds: float = 0.0
    error: str | None = None
    cursor: str | None = None
    warnings: list[str] = field(default_factory=list)
    schema_changes: list[str] = field(default_factory=list)


def failure_text(exc: BaseException, step: str | None = None) -> str:
    """What a failed stream says: a RawqueryError's own message (it says what to do);
    anything else is a bug in rawquery, named with where, its type and first line."""
    if isinstance(exc, RawqueryError):
        return str(exc)
    lines = str(exc).strip().splitlines()
    where = f" in {step}" if step else ""
    detail = f": {lines[0]}" if lines else ""
    return f"internal error{where}: {type(exc).__name__}{detail}"


def merged(*groups: Iterable[str]) -> list[str]:
    """Warnings and schema changes repeat per segment: each distinct line once, in order."""
    return list(dict.fromkeys(line for group in groups for line in group))


@dataclass(frozen=True, slots=True)
class StreamRun:
    registry: Registry
    sync_id: str
    stream: str

    def record_now(self) -> StreamRunRecord:
        return self._in_sync()[1]

    def _in_sync(self) -> tuple[SyncRecord, StreamRunRecord]:
        sync = self.registry.get_sync(self.sync_id)
        return sync, next(r for r in sync.streams if r.stream == self.stream)

    def start(self) -> None:
        self._update(status="running", started_at=_now())

    def record(
        self, rows: int, pages: int, warnings: Sequence[str], changes: Sequence[str]
    ) -> None:
        """After a committed segment: the stream's totals so far, and what it noticed."""
        sync, run = self._in_sync()
        # The totals recorded before are the rows committed until now: whichever process
        # commits the next segment counts only what that commit added.
        metrics.rows_committed(sync.connection, self.stream, rows - run.rows)
        self._update(
            rows=rows,
            pages=pages,
            warnings=merged(run.warnings, warnings),
            schema_changes=merged(run.schema_changes, changes),
        )

    def fail(self, error: str, warnings: Sequence[str] = (), changes: Sequence[str] = ()) -> None:
        sync, run = self._in_sync()
        seconds = _seconds(run.started_at)
        self._update(
            status="failed",
            error=error,
            warnings=merged(run.warnings, warnings),
            schema_changes=merged(run.schema_changes, changes),
            finished_at=_now(),
            seconds=seconds,
        )
        metrics.stream_ended(sync.connection, self.stream, "failed", seconds)

    def succeed(self, cursor: str | None) -> None:
        sync, run = self._in_sync()
        seconds = _seconds(run.started_at)
        self._update(status="succeeded", cursor=cursor, finished_at=_now(), seconds=seconds)
        metrics.stream_ended(sync.connection, self.stream, "succeeded", seconds)

    def _update(self, **fields: object) -> None:
        self.registry.update_stream_run(self.sync_id, self.stream, **fields)


def parent_failure(stream: Stream, failed: Collection[str]) -> str | None:
    """Why a child stream is not run: its parent stream failed in this sync."""
    if stream.parent is None or stream.parent.stream not in failed:
        return None
    return (
        f"parent stream '{stream.parent.stream}' failed in this sync, so its child requests "
        "were not made; fix the parent's error and sync again"
    )


def outcome_of(run: StreamRunRecord) -> StreamOutcome:
    return StreamOutcome(
        run.stream,
        run.status,
        rows=run.rows,
        pages=run.pages,
        seconds=run.seconds or 0.0,
        error=run.error,
        cursor=run.cursor,
        warnings=list(run.warnings),
        schema_changes=list(run.schema_changes),
    )


def end_sync_if_last(registry: Registry, sync_id: str) -> bool:
    """End the sync once no stream is queued or running (the status from its streams);
    True when this call ended it."""
    sync = registry.get_sync(sync_id)
    if sync.status not in ("queued", "running"):
        return False
    if any(r.status in ("queued", "running") for r in sync.streams):
        return False
    failed = [r.stream for r in sync.streams if r.status != "succeeded"]
    status = "failed" if failed else "succeeded"
    registry.finish_sync(
        sync_id, status, error=f"streams failed: {', '.join(failed)}" if failed else None
    )
    metrics.sync_ended(sync.connection, status, _seconds(sync.started_at))
    return True


def _seconds(started_at: datetime | None) -> float | None:
    if started_at is None:
        return None
    started = started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC)
    return (_now() - started).total_seconds()


def _now() -> datetime:
    return datetime.now(UTC)
