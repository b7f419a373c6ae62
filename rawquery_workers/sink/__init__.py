"""Iceberg: catalog, tables, schema evolution, Parquet writes, sync state in snapshots.

May import: errors, settings, private_files, spec, transform (batch shapes, cursor rules).
"""

from __future__ import annotations

from rawquery_workers.settings import Settings, get_settings
from rawquery_workers.sink.catalog import close_catalogs, new_catalog, open_catalog
from rawquery_workers.sink.iceberg import IcebergSink

__all__ = ["IcebergSink", "close_catalogs", "new_catalog", "open_catalog", "open_sink"]


def open_sink(settings: Settings | None = None) -> IcebergSink:
    """The sink over the process-wide catalog of `settings` (default: the environment)."""
    settings = settings or get_settings()
    return IcebergSink(
        open_catalog(settings),
        target_file_size=settings.target_file_size,
        merge_file_size=settings.merge_file_size,
    )
