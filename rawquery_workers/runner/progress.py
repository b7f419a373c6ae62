"""A stream run's live progress: pages and records fetched, and the time its requests spent
waiting for the connection's rate limit, counted the same way in both modes.

The counts come from the events a stream's steps emit (`context.StreamContext.on_progress`):
`pipeline` sends `{"event": "page", "stream", "records", ...}` per page, and the stream's
`ApiClient` `{"event": "request", "stream", "rate_limit_wait", ...}` per attempt.
`StreamCounts.add` keeps only those numbers: a URL or anything else an event carries never
reaches a count, so progress may be stored and shown anywhere.

Embedded mode shows the counts as the events come (`cli/display.Progress`). In distributed
mode the worker fetching a segment writes them into the stream run's `progress` column
(`ProgressWriter`, at most every WRITE_SECONDS, and once at the end of the segment) and
`rq connections sync --wait` and `rq connections status` read them back. The column holds

    {"pages", "records", "waits", "waited"}   the stream run's totals so far
    "segment", "segment_start"                 the segment being fetched; the totals before it
    "updated_at"                               when the worker wrote it (ISO 8601, UTC)

Totals add up across segments. A fetch redelivered after its worker died starts again from
`segment_start`: the pages it fetches again replace the lost attempt's instead of being
counted twice, so the totals describe the fetches that produced the data (the dead attempt's
rate-limit waits are dropped with its pages).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

ProgressHook = Callable[[dict[str, Any]], None]  # receives one progress event

Stored = dict[str, Any]
WRITE_SECONDS = 0.5  # a worker writes a stream's progress at most this often
RATE_WINDOW_SECONDS = 5.0  # "current rate" = records per second over this window
_RATE_RESOLUTION = 0.1  # samples closer than this are merged
_RATE_MIN_SPAN = 1.0


@dataclass(frozen=True, slots=True)
class StreamCounts:
    """What a stream run has fetched so far and how long it waited for the rate limit."""

    pages: int = 0
    records: int = 0
    waits: int = 0  # requests that had to wait for the rate limit
    waited: float = 0.0  # seconds they waited, in all

    def add(self, event: Mapping[str, Any]) -> StreamCounts:
        """These counts after one `page` or `request` event (other events change nothing)."""
        kind = event.get("event")
        if kind == "page":
            records = int(event.get("records") or 0)
            return replace(self, pages=self.pages + 1, records=self.records + records)
        wait = float(event.get("rate_limit_wait") or 0.0) if kind == "request" else 0.0
        if wait > 0:
            return replace(self, waits=self.waits + 1, waited=self.waited + wait)
        return self

    def to_dict(self) -> dict[str, int | float]:
        return {
            "pages": self.pages,
            "records": self.records,
            "waits": self.waits,
            "waited": round(self.waited, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> StreamCounts:
        """The counts in a stored `progress` (missing figures count as zero)."""
        data = data or {}
        return cls(
            pages=int(data.get("pages") or 0),
            records=int(data.get("records") or 0),
            waits=int(data.get("waits") or 0),
            waited=float(data.get("waited") or 0.0),
        )


def segment_start(stored: Mapping[str, Any] | None, segment: int) -> StreamCounts:
    """The totals a fetch of `segment` adds to: everything before that segment (see the
    module docstring for a redelivered fetch)."""
    if not stored:
        return StreamCounts()
    if stored.get("segment") == segment:
        return StreamCounts.from_dict(stored.get("segment_start"))
    return StreamCounts.from_dict(stored)


class ProgressWriter:
    """A fetch step's progress hook: adds the step's events to the totals before its segment
    and hands them to `write` (a registry update) at most every `every` seconds. The step
    stores `stored()` itself once the segment is fetched."""

    def __init__(
        self,
        stored: Mapping[str, Any] | None,
        segment: int,
        write: Callable[[Stored], None],
        *,
        every: float = WRITE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.segment = segment
        self.start = segment_start(stored, segment)
        self.counts = self.start
        self._write = write
        self._every = every
        self._clock = clock
        self._written_at: float | None = None

    def __call__(self, event: Mapping[str, Any]) -> None:
        counts = self.counts.add(event)
        if counts == self.counts:
            return
        self.counts = counts
        now = self._clock()
        if self._written_at is None or now - self._written_at >= self._every:
            self._written_at = now
            self._write(self.stored())

    def stored(self) -> Stored:
        """The `progress` column's value now."""
        return {
            **self.counts.to_dict(),
            "segment": self.segment,
            "segment_start": self.start.to_dict(),
            "updated_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }


class RateWindow:
    """Records per second over the last `seconds`, from a running count seen now and then.

    Thread-safe: a live display reads the rate while events arrive. With no new records for
    a whole window the rate falls to zero.
    """

    def __init__(
        self, seconds: float = RATE_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._seconds = seconds
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def observe(self, count: int) -> None:
        with self._lock:
            now = self._clock()
            samples = self._samples
            if len(samples) >= 2 and now - samples[-2][0] < _RATE_RESOLUTION:
                samples[-1] = (now, count)
            else:
                samples.append((now, count))
            self._prune(now)

    def rate(self) -> float:
        with self._lock:
            now = self._clock()
            self._prune(now)
            if not self._samples:
                return 0.0
            (since, first), (_, last) = self._samples[0], self._samples[-1]
            # Over a second at least: the records of a first page are no rate yet.
            return (last - first) / max(now - since, _RATE_MIN_SPAN)

    def _prune(self, now: float) -> None:
        # Keep the last sample at or before the window's start: the rate spans the window.
        samples = self._samples
        while len(samples) > 1 and samples[1][0] <= now - self._seconds:
            samples.popleft()
