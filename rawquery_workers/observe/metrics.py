"""The Prometheus metrics of syncs, and the one place where a progress event or a stream
outcome becomes a metric.

    rawquery_requests_total{connection,stream,status}        HTTP attempts; status is the
                                                             HTTP code, "error" if none came
    rawquery_retries_total{connection,stream}                attempts that were retried
    rawquery_rate_limit_wait_seconds_total{connection,stream} time requests waited for the
                                                             connection's rate limit
    rawquery_pages_total{connection,stream}                  pages fetched
    rawquery_records_fetched_total{connection,stream}        records in them
    rawquery_rows_committed_total{connection,stream}         rows committed to Iceberg
    rawquery_stream_duration_seconds{connection,stream,status}  histogram: one per stream run
                                                             that ended (succeeded|failed)
    rawquery_sync_duration_seconds{connection,status}        histogram: one per sync ended

`rawquery_seconds_since_last_success` is computed from the registry when scraped
(`exposition.py`), not counted here.

The counts come from the events a stream's steps emit: `counting` wraps each stream's
progress hook (runner/context.py), so the same events that drive the progress display count
here, in both modes. Rows and durations come from `StreamRun` (runner/runs.py), which both
runners use to record a stream's outcome. Labels are connection and stream names and an HTTP
status code only: no URL, parameter or anything else an event carries becomes a label.

The metrics are created on first use, not when this module is imported: prometheus_client
chooses between in-process values and the files a worker's pool processes share
(`exposition.share_across_processes`) when it is first imported, and a worker imports this
module (through the tasks) before it can choose.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)
Hook = Callable[[dict[str, Any]], None]  # runner.progress.ProgressHook
NO_RESPONSE = "error"  # the status label of an attempt that got no HTTP answer
# A stream run takes seconds to hours; a sync as long as its longest stream.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
_STREAM = ("connection", "stream")


class Meters:
    """The metrics, registered on their own `registry` (not prometheus_client's global
    one, which also holds the process and GC collectors of whatever process imports it)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)

        def counter(name: str, doc: str, labels: tuple[str, ...] = _STREAM) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        self.requests = counter(
            "rawquery_requests",
            "HTTP requests sent to APIs (each attempt), by status code ('error': no answer)",
            (*_STREAM, "status"),
        )
        self.retries = counter("rawquery_retries", "HTTP attempts that failed and were retried")
        self.rate_limit_wait = counter(
            "rawquery_rate_limit_wait_seconds", "Seconds requests waited for the rate limit"
        )
        self.pages = counter("rawquery_pages", "Pages fetched")
        self.records = counter("rawquery_records_fetched", "Records fetched (in those pages)")
        self.rows = counter("rawquery_rows_committed", "Rows committed to Iceberg tables")
        self.stream_seconds = Histogram(
            "rawquery_stream_duration_seconds",
            "How long a stream run took, by how it ended",
            (*_STREAM, "status"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.sync_seconds = Histogram(
            "rawquery_sync_duration_seconds",
            "How long a sync (all its streams) took, by how it ended",
            ("connection", "status"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )


@functools.cache
def meters() -> Meters:
    return Meters()


def _safely(record: Callable[..., None]) -> Callable[..., None]:
    """Metrics are for watching: a failure to count (a full disk under the pool's metric
    files) is logged once and never fails the sync."""
    failed = False

    @functools.wraps(record)
    def run(*args: Any) -> None:
        nonlocal failed
        try:
            record(*args)
        except Exception as exc:
            if not failed:
                failed = True
                log.warning("metrics are not recorded: %s: %s", type(exc).__name__, exc)

    return run


@_safely
def record_event(connection: str, event: Mapping[str, Any]) -> None:
    """Count one progress event of `connection` (runner/progress.py lists them)."""
    kind = event.get("event")
    stream = str(event.get("stream") or "")
    m = meters()
    if kind == "request":
        status = event.get("status")
        label = str(status) if isinstance(status, int) else NO_RESPONSE
        m.requests.labels(connection, stream, label).inc()
        wait = float(event.get("rate_limit_wait") or 0.0)
        if wait > 0:
            m.rate_limit_wait.labels(connection, stream).inc(wait)
    elif kind == "retry":
        m.retries.labels(connection, stream).inc()
    elif kind == "page":
        m.pages.labels(connection, stream).inc()
        m.records.labels(connection, stream).inc(int(event.get("records") or 0))


def counting(connection: str, hook: Hook | None) -> Hook:
    """A stream's progress hook that counts each event, then hands it to `hook`."""

    def count_then_forward(event: dict[str, Any]) -> None:
        record_event(connection, event)
        if hook is not None:
            hook(event)

    return count_then_forward


@_safely
def rows_committed(connection: str, stream: str, rows: int) -> None:
    if rows > 0:
        meters().rows.labels(connection, stream).inc(rows)


@_safely
def stream_ended(connection: str, stream: str, status: str, seconds: float | None) -> None:
    meters().stream_seconds.labels(connection, stream, status).observe(max(seconds or 0.0, 0.0))


@_safely
def sync_ended(connection: str, status: str, seconds: float | None) -> None:
    meters().sync_seconds.labels(connection, status).observe(max(seconds or 0.0, 0.0))
