"""The catalog calls the sink makes, with failures as SinkError, and optimistic commits.

A commit is planned against the table's head and lands only if the head has not moved
(the SQL catalog compares metadata locations; the snapshot refs are asserted). When
another writer got there first, the plan is thrown away, the table reloaded, and the
caller's `done` check consulted before planning again: that is what keeps a redelivered
or raced segment from landing twice (pyiceberg's own retry, switched off on our tables,
would re-apply an append to the new head without any check).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
)
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from rawquery_workers.errors import SinkError

logger = logging.getLogger(__name__)
_PARSED_KEPT = 16  # tables whose metadata is kept parsed
T = TypeVar("T")
Plan = Callable[[Table], tuple[Transaction, list[str]]]


class CatalogTables:
    """One catalog's tables, by (namespace, name)."""

    def __init__(self, catalog: Catalog, max_commit_attempts: int = 30) -> None:
        self.catalog = catalog
        self.max_commit_attempts = max_commit_attempts
        # the newest metadata parsed per table, with its location; least recent first
        self._parsed: dict[tuple[str, str], tuple[str, TableMetadata]] = {}
        self._lock = threading.Lock()

    def guard(self, where: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except IntegrityError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise SinkError(
                f"{where}: the Iceberg catalog or warehouse failed: {first_line(exc)}"
            ) from exc

    def load_or_none(self, namespace: str, table: str) -> Table | None:
        try:
            return self.guard(f"{namespace}.{table}", lambda: self._load(namespace, table))
        except (NoSuchTableError, NoSuchNamespaceError):
            return None

    def _load(self, namespace: str, table: str) -> Table:
        """The table at its current metadata file. A metadata file never changes once
        written, so one parsed before is not read and parsed again: a sync loads a table
        about ten times, and a 50,000-column table's metadata takes ~0.7 s to parse."""
        catalog = self.catalog
        if not isinstance(catalog, SqlCatalog):
            return catalog.load_table((namespace, table))
        location = _metadata_location(catalog, namespace, table)
        with self._lock:
            known = self._parsed.get((namespace, table))
        if location is None or known is None or known[0] != location:
            loaded = catalog.load_table((namespace, table))
            with self._lock:
                self._parsed.pop((namespace, table), None)
                self._parsed[(namespace, table)] = (loaded.metadata_location, loaded.metadata)
                while len(self._parsed) > _PARSED_KEPT:
                    self._parsed.pop(next(iter(self._parsed)))
            return loaded
        metadata = known[1]
        io = catalog._load_file_io(metadata.properties, location)
        return Table((namespace, table), metadata, location, io, catalog)

    def load(self, namespace: str, table: str) -> Table:
        loaded = self.load_or_none(namespace, table)
        if loaded is None:
            raise SinkError(
                f"table {namespace}.{table} does not exist; prepare() creates it before writes"
            )
        return loaded

    def namespaces(self) -> list[str]:
        found = self.guard("list namespaces", self.catalog.list_namespaces)
        return sorted(Catalog.namespace_to_string(ns) for ns in found)

    def names(self, namespace: str) -> list[str]:
        try:
            found = self.guard(namespace, lambda: self.catalog.list_tables(namespace))
        except NoSuchNamespaceError:
            return []
        return sorted(ident[-1] for ident in found)

    def ensure_namespace(self, namespace: str) -> None:
        # IntegrityError: another writer created it between pyiceberg's check and insert.
        with contextlib.suppress(NamespaceAlreadyExistsError, IntegrityError):
            self.guard(namespace, lambda: self.catalog.create_namespace(namespace))

    def drop(self, namespace: str, table: str) -> bool:
        try:
            self.guard(f"{namespace}.{table}", lambda: self.catalog.drop_table((namespace, table)))
        except (NoSuchTableError, NoSuchNamespaceError):
            return False
        return True

    def drop_namespace(self, namespace: str) -> None:
        with contextlib.suppress(NoSuchNamespaceError, NamespaceNotEmptyError):
            self.guard(namespace, lambda: self.catalog.drop_namespace(namespace))

    # --- commits ------------------------------------------------------------------------

    def attempts(self, where: str) -> Iterator[int]:
        """Attempt numbers, with a growing, jittered pause between them; SinkError at the end."""
        for attempt in range(self.max_commit_attempts):
            if attempt:
                logger.info("%s: another writer committed first; re-planning (%d)", where, attempt)
                time.sleep(min(2.0, 0.01 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5))
            yield attempt
        raise SinkError(
            f"{where}: gave up after {self.max_commit_attempts} attempts because other writers "
            "kept changing the table; only one sync of a connection should run at a time"
        )

    def try_commit(self, tx: Transaction, where: str) -> bool:
        """Commit; False on a lost race (the table moved on), SinkError on anything else."""
        try:
            tx.commit_transaction()
        except CommitFailedException:
            return False
        except NoSuchTableError:
            raise SinkError(f"{where}: the table was dropped during the commit") from None
        except Exception as exc:
            raise SinkError(f"{where}: commit failed: {first_line(exc)}") from exc
        return True

    def commit_until_done(
        self, namespace: str, table: str, done: Callable[[TableMetadata], bool], plan: Plan
    ) -> bool:
        """Plan against the latest head and commit until it lands (True), or until `done`
        says this commit already exists (False). `plan` returns the transaction and the
        scratch files it wrote, deleted when the transaction loses its race."""
        where = f"{namespace}.{table}"
        for _ in self.attempts(where):
            loaded = self.load(namespace, table)
            if done(loaded.metadata):
                return False
            tx, scratch = self.guard(where, lambda t=loaded: plan(t))  # type: ignore[misc]
            try:
                if self.try_commit(tx, where):
                    return True
            except SinkError:
                reloaded = self.load_or_none(namespace, table)
                if reloaded is not None and done(reloaded.metadata):
                    return True  # it landed although the answer was lost
                raise
            discard(loaded, scratch)
        raise AssertionError("attempts() raises when exhausted")


def discard(table: Table, paths: Sequence[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):  # else an orphan, for cleanup_orphans
            table.io.delete(path)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _metadata_location(catalog: SqlCatalog, namespace: str, table: str) -> str | None:
    """The table's current metadata file as the SQL catalog records it (None: no such
    table, and `load_table` says why)."""
    query = select(IcebergTables.metadata_location).where(
        IcebergTables.catalog_name == catalog.name,
        IcebergTables.table_namespace == namespace,
        IcebergTables.table_name == table,
    )
    with Session(catalog.engine) as session:
        return session.execute(query).scalar_one_or_none()
