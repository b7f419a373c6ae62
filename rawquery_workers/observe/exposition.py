"""What a scrape or a metrics file holds: the counts of `metrics.py`, added up over a
worker's pool, and `rawquery_seconds_since_last_success{connection,stream}`, computed from
the registry when it is read.

A Celery worker runs its tasks in pool processes (prefork), so the counts happen there,
while /metrics is served by the worker's main process. They meet through prometheus_client's
multiprocess mode (`share_across_processes`): each process writes its counters to a memory-
mapped file in one folder, and the main process adds the files up at every scrape.
Why files rather than counting in the main process through Celery's signals: the signals
that carry a task's outcome fire in the pool process, and the only data Celery hands back to
the main process is a task's result, once the task ends (rawquery stores none; a 10-minute
fetch would show nothing until it ended). A pool process that dies or is replaced leaves its
file, so the counts never go backwards.

An embedded sync counts in its own process and writes the text file of
`rq connections sync --metrics-file` (node_exporter's textfile-collector format) when it
ends (`write_textfile`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from rawquery_workers.errors import ConfigError, RawqueryError
from rawquery_workers.observe.metrics import meters

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)
STALENESS = "rawquery_seconds_since_last_success"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_across_processes() -> str:
    """In a worker's main process, before its pool starts: have every process of the
    worker count into files in one folder (PROMETHEUS_MULTIPROC_DIR, a new private one
    unless it is set). Returns the folder."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        folder = tempfile.mkdtemp(prefix="rawquery-metrics-")
        os.environ[MULTIPROC_ENV] = folder  # the pool's processes inherit it
        atexit.register(_remove_folder, folder, os.getpid())
    if "prometheus_client" not in sys.modules:
        return folder  # it reads the variable when first imported
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus_client picks its value class once, when it is imported, from this
        # variable; `celery` imports it before any app code runs when Flower is installed
        # (Flower's command plugin loads it). Every value made from now on is made through
        # `values.ValueClass`, and ours are all made later, in the pool's processes.
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return folder


def _remove_folder(folder: str, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked pool process that inherited the handler
        shutil.rmtree(folder, ignore_errors=True)


class LastSuccessCollector:
    """`rawquery_seconds_since_last_success` from the registry, at collection time; one
    connection's streams only when `connection` is given. A stream that never succeeded has
    no sample. An unreachable registry yields none (logged): the scrape still works."""

    def __init__(self, connection: str | None = None) -> None:
        self.connection = connection

    def describe(self) -> list[Metric]:
        return []  # so that registering it does not query the registry

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        from rawquery_workers.registry import open_registry
        from rawquery_workers.registry.freshness import last_successes

        family = GaugeMetricFamily(
            STALENESS,
            "Seconds since each stream's latest successful sync ended",
            labels=["connection", "stream"],
        )
        try:
            found = last_successes(open_registry(), self.connection)
        except (SQLAlchemyError, RawqueryError) as exc:
            log.warning("%s not computed: the registry is unreachable: %s", STALENESS, exc)
            found = {}
        now = datetime.now(UTC)
        for (connection, stream), finished in sorted(found.items()):
            family.add_metric([connection, stream], max((now - finished).total_seconds(), 0.0))
        yield family


class _OneConnection:
    """The series of one connection from `source` (a metrics file is about its sync)."""

    def __init__(self, source: CollectorRegistry, connection: str) -> None:
        self.source = source
        self.connection = connection

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.metrics_core import Metric

        for family in self.source.collect():
            samples = [s for s in family.samples if s.labels.get("connection") == self.connection]
            if samples:
                kept = Metric(family.name, family.documentation, family.type, family.unit)
                kept.samples = samples
                yield kept


def worker_metrics() -> tuple[bytes, str]:
    """A worker's /metrics: every process's counts added up, and the registry's gauge."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:  # a solo or threads pool without the shared folder: this process counts alone
        registry.register(meters().registry)
    registry.register(LastSuccessCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_metrics() -> tuple[bytes, str]:
    """Beat's /metrics: the registry's gauge (beat runs no sync, so it counts nothing)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(meters().registry)
    registry.register(LastSuccessCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def write_textfile(path: Path, connection: str) -> None:
    """The metrics of `connection`'s sync in this process, written to `path` at once
    (a temporary file renamed over it: a collector never reads half a file)."""
    from prometheus_client import CollectorRegistry, write_to_textfile

    registry = CollectorRegistry()
    registry.register(_OneConnection(meters().registry, connection))
    registry.register(LastSuccessCollector(connection))
    try:
        write_to_textfile(str(path), registry)
    except OSError as exc:
        raise ConfigError(
            f"--metrics-file {path}: cannot write it ({exc.strerror}); give a path in a "
            "folder that exists and that this user may write to"
        ) from exc


@contextlib.contextmanager
def textfile_at_end(path: Path | None, connection: str) -> Iterator[None]:
    """Write `connection`'s metrics file when the block ends, however it ends (a failed
    sync is when the numbers matter most). A write that fails after the block failed is
    logged, so that the sync's own error is the one reported."""
    if path is None:
        yield
        return
    try:
        yield
    except BaseException:
        try:
            write_textfile(path, connection)
        except ConfigError as exc:
            log.error("%s", exc)
        raise
    write_textfile(path, connection)
