"""The connection registry: specs, encrypted credentials, schedules and sync history.

`open_registry()` is the way in; `Registry` holds the methods, `Vault` the encryption.

May import: errors, settings, private_files, spec, http (redaction). Never runner, distributed, cli.
"""

from __future__ import annotations

from rawquery_workers.registry.db import create_engine_for, dispose_engines, ensure_schema
from rawquery_workers.registry.records import ConnectionRecord, StreamRunRecord, SyncRecord
from rawquery_workers.registry.store import KEEP, Registry, open_registry
from rawquery_workers.registry.vault import Vault, load_vault

__all__ = [
    "KEEP",
    "ConnectionRecord",
    "Registry",
    "StreamRunRecord",
    "SyncRecord",
    "Vault",
    "create_engine_for",
    "dispose_engines",
    "ensure_schema",
    "load_vault",
    "open_registry",
]
