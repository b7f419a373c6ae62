"""`rq maintain`: a connection's tables kept small and healthy (sink/maintenance.py does one
table), under the connection's lease like a sync, in either mode.

    maintain_connection(registry, settings, "shop")            # every table of it
    maintain_connection(..., streams=["orders"])               # a stream and its children
    maintain_after_sync(settings, sink, "shop", names)         # tables past the threshold

Besides the tables: staging directories (`_rq_staging/<sync_id>`) of syncs that ended
without removing them (killed), of this connection, are deleted; a directory without a
sync record is deleted once older than the orphan grace.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from rawquery_workers.errors import NotFoundError
from rawquery_workers.registry import Registry
from rawquery_workers.registry.leases import maintenance_id
from rawquery_workers.runner.locks import embedded_lease
from rawquery_workers.runner.staging import Staging
from rawquery_workers.settings import Settings
from rawquery_workers.sink import IcebergSink, open_sink
from rawquery_workers.sink.maintenance import Policy, TableReport, maintain_table, needs_maintenance
from rawquery_workers.spec.loading import parse_spec
from rawquery_workers.spec.models import Spec

log = logging.getLogger(__name__)


@dataclass(slots=True)
class MaintenanceReport:
    """What one run did: a report per table, and the staging leftovers deleted."""

    connection: str
    tables: list[TableReport] = field(default_factory=list)
    staging_removed: list[str] = field(default_factory=list)
    staging_bytes: int = 0

    def lines(self) -> list[str]:
        out = [t.summary() for t in self.tables]
        if self.staging_removed:
            out.append(
                f"{len(self.staging_removed)} staging directories of ended syncs deleted "
                f"({self.staging_bytes:,} bytes)"
            )
        return out or [f"{self.connection}: no tables yet"]


def maintain_connection(
    registry: Registry,
    settings: Settings,
    connection: str,
    *,
    streams: list[str] | None = None,
    sink: IcebergSink | None = None,
) -> MaintenanceReport:
    """Maintain `connection`'s tables (or those of `streams`) holding its lease.
    ConflictError while a sync of it runs; NotFoundError for an unknown connection or
    stream."""
    record = registry.get_connection(connection)
    spec = parse_spec(record.spec, source=f"connection '{connection}'")
    sink = sink or open_sink(settings)
    names = _tables(spec, sink, connection, streams)
    report = MaintenanceReport(connection)
    with embedded_lease(registry, connection, maintenance_id()):
        policy = Policy.of(settings)
        for name in names:
            report.tables.append(maintain_table(sink.tables, connection, name, policy))
        _clean_staging(registry, settings, connection, report)
    return report


def maintain_after_sync(
    settings: Settings, sink: IcebergSink, connection: str, names: list[str]
) -> list[TableReport]:
    """After a sync (its lease still held): maintain those of its tables that crossed the
    threshold (RAWQUERY_MAINTAIN_AFTER_FILES). A failure is logged, never the sync's."""
    if settings.maintain_after_files <= 0:
        return []
    policy = Policy.of(settings)
    done: list[TableReport] = []
    for name in names:
        try:
            table = sink.tables.load_or_none(connection, name)
            if table is not None and needs_maintenance(
                table, policy, settings.maintain_after_files
            ):
                done.append(maintain_table(sink.tables, connection, name, policy))
        except Exception as exc:  # the sync's data is committed whatever happens here
            log.warning("maintenance of %s.%s after the sync failed: %s", connection, name, exc)
    return done


def _tables(spec: Spec, sink: IcebergSink, connection: str, streams: list[str] | None) -> list[str]:
    existing = (
        set(sink.list_tables(connection)) if connection in sink.tables.namespaces() else set()
    )
    if not streams:
        return sorted(existing)
    wanted: list[str] = []
    for name in streams:
        try:
            stream = spec.stream(name)
        except KeyError:
            known = ", ".join(s.name for s in spec.streams)
            raise NotFoundError(
                f"connection {connection} has no stream '{name}' (its streams: {known})"
            ) from None
        wanted += [
            t for t in [stream.name, *map(stream.child_table, stream.expand)] if t in existing
        ]
    return wanted


def _clean_staging(
    registry: Registry, settings: Settings, connection: str, report: MaintenanceReport
) -> None:
    staging = Staging.of(settings)
    cutoff = time.time() - settings.orphan_grace_seconds
    for sync_id, (size, newest) in staging.leftovers().items():
        try:
            sync = registry.get_sync(sync_id)
        except NotFoundError:
            ended = newest < cutoff  # no record: nobody's, once old enough
        else:
            ended = sync.connection == connection and sync.status not in ("queued", "running")
        if ended:
            staging.remove(sync_id)
            report.staging_removed.append(sync_id)
            report.staging_bytes += size
