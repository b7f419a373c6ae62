"""The connection registry: connections, their encrypted credentials, syncs and stream runs.

Each method is one short transaction, committed when it returns. Credentials are stored
only as Fernet tokens (see `vault.py`); nothing here puts them in a message or a log.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from rawquery_workers.errors import ConfigError, ConflictError, NotFoundError, SpecError
from rawquery_workers.registry import db
from rawquery_workers.registry.db import (
    connections,
    read_tx,
    stream_runs,
    syncs,
    utcnow,
    write_tx,
)
from rawquery_workers.registry.db import credentials as secrets
from rawquery_workers.registry.leases import SyncLeases
from rawquery_workers.registry.records import (
    ConnectionRecord,
    StreamRunRecord,
    SyncRecord,
    connection_record,
    run_record,
    sync_record,
)
from rawquery_workers.registry.takeover import StreamSteps
from rawquery_workers.registry.vault import Vault, load_vault
from rawquery_workers.settings import Settings, get_settings
from rawquery_workers.spec.credentials import Credentials

SYNC_STATUSES = ("queued", "running", "succeeded", "failed")
TRIGGERS = ("manual", "schedule")
RUN_FIELDS = frozenset(
    {
        "status",
        "rows",
        "pages",
        "error",
        "cursor",
        "schema_changes",
        "warnings",
        "started_at",
        "finished_at",
        "seconds",
        "progress",
    }
)


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # "leave as it is" for arguments where None means "remove"


def _missing(name: str) -> NotFoundError:
    return NotFoundError(f"no connection named '{name}'; see `rq connections list`")


class Registry:
    """Plain methods over the registry tables; `vault` encrypts what `secrets` holds."""

    def __init__(self, engine: Engine, vault: Vault) -> None:
        self.engine = engine
        self.vault = vault
        self.leases = SyncLeases(engine)
        self.steps = StreamSteps(engine)

    # --- connections -------------------------------------------------------------------

    def create_connection(
        self,
        name: str,
        spec_json: Mapping[str, Any],
        credentials: Credentials,
        schedule: str | None = None,
    ) -> ConnectionRecord:
        now = utcnow()
        ciphertext = self.vault.encrypt(credentials.to_json())
        try:
            with write_tx(self.engine) as conn:
                if _connection_row(conn, name) is not None:
                    raise _exists(name)
                _refuse_case_twin(conn, name)
                conn.execute(
                    insert(connections).values(
                        name=name,
                        spec=dict(spec_json),
                        schedule=schedule,
                        created_at=now,
                        updated_at=now,
                        last_scheduled_at=None,
                    )
                )
                conn.execute(
                    insert(secrets).values(connection=name, ciphertext=ciphertext, updated_at=now)
                )
        except IntegrityError:  # a concurrent create won between our check and insert
            raise _exists(name) from None
        return self.get_connection(name)

    def update_connection(
        self,
        name: str,
        spec_json: Mapping[str, Any] | None = None,
        credentials: Credentials | None = None,
        schedule: str | None | _Keep = KEEP,
    ) -> ConnectionRecord:
        """Replace what is given; `schedule=None` removes the schedule, KEEP leaves it."""
        now = utcnow()
        values: dict[str, Any] = {"updated_at": now}
        if spec_json is not None:
            values["spec"] = dict(spec_json)
        if schedule is not KEEP:
            values["schedule"] = schedule
        with write_tx(self.engine) as conn:
            result = conn.execute(
                update(connections).where(connections.c.name == name).values(**values)
            )
            if result.rowcount == 0:
                raise _missing(name)
            if credentials is not None:
                self._store_credentials(conn, name, credentials, now)
        return self.get_connection(name)

    def get_connection(self, name: str) -> ConnectionRecord:
        with read_tx(self.engine) as conn:
            row = _connection_row(conn, name)
            twin = None if row is not None else _case_twin(conn, name)
        if row is None:
            hint = f" (names are exact: did you mean '{twin}'?)" if twin else ""
            raise NotFoundError(f"no connection named '{name}'{hint}; see `rq connections list`")
        return connection_record(row)

    def list_connections(self) -> list[ConnectionRecord]:
        with read_tx(self.engine) as conn:
            rows = conn.execute(select(connections).order_by(connections.c.name)).mappings()
            return [connection_record(row) for row in rows]

    def delete_connection(self, name: str) -> None:
        """Remove the connection, its credentials, schedule and sync history."""
        with write_tx(self.engine) as conn:
            if _connection_row(conn, name) is None:
                raise _missing(name)
            ids = select(syncs.c.id).where(syncs.c.connection == name)
            conn.execute(delete(stream_runs).where(stream_runs.c.sync_id.in_(ids)))
            conn.execute(delete(syncs).where(syncs.c.connection == name))
            conn.execute(delete(secrets).where(secrets.c.connection == name))
            conn.execute(delete(connections).where(connections.c.name == name))

    def mark_scheduled(self, connection: str, at: datetime) -> bool:
        """Record `at` as the last scheduled fire time, unless one at or after it is.

        True when this call recorded it: two schedulers computing the same slot never
        both fire it.
        """
        c = connections.c
        with write_tx(self.engine) as conn:
            result = conn.execute(
                update(connections)
                .where(c.name == connection)
                .where(c.last_scheduled_at.is_(None) | (c.last_scheduled_at < at))
                .values(last_scheduled_at=at)
            )
            if result.rowcount == 0 and _connection_row(conn, connection) is None:
                raise _missing(connection)
            return bool(result.rowcount)

    # --- credentials -------------------------------------------------------------------

    def get_credentials(self, name: str) -> Credentials:
        with read_tx(self.engine) as conn:
            token = conn.execute(
                select(secrets.c.ciphertext).where(secrets.c.connection == name)
            ).scalar_one_or_none()
            if token is None and _connection_row(conn, name) is None:
                raise _missing(name)
        if token is None:
            return Credentials()
        try:
            return Credentials.from_json(self.vault.decrypt(token))
        except (ValueError, TypeError):  # decrypted, but not what we stored
            raise ConfigError(
                f"the stored credentials of connection '{name}' are damaged; set them again "
                f"with `rq connections update {name}` and the credential flags"
            ) from None

    def save_credentials(self, name: str, creds: Credentials) -> None:
        """Encrypt and store `creds`, committed before returning (OAuth2 rotation needs it)."""
        with write_tx(self.engine) as conn:
            if _connection_row(conn, name) is None:
                raise _missing(name)
            self._store_credentials(conn, name, creds, utcnow())

    def rotate_all(self) -> int:
        """Re-encrypt every stored credential with the vault's first key; returns how many."""
        with write_tx(self.engine) as conn:
            rows = conn.execute(select(secrets.c.connection, secrets.c.ciphertext)).all()
            for name, token in rows:
                conn.execute(
                    update(secrets)
                    .where(secrets.c.connection == name)
                    .values(ciphertext=self.vault.rotate(token))
                )
        return len(rows)

    def _store_credentials(
        self, conn: Connection, name: str, creds: Credentials, now: datetime
    ) -> None:
        ciphertext = self.vault.encrypt(creds.to_json())
        values = {"ciphertext": ciphertext, "updated_at": now}
        result = conn.execute(update(secrets).where(secrets.c.connection == name).values(**values))
        if result.rowcount == 0:
            conn.execute(insert(secrets).values(connection=name, **values))

    # --- syncs ---------------------------------------------------------------------------

    def create_sync(
        self,
        connection: str,
        streams: Sequence[str],
        full_refresh: bool = False,
        trigger: str = "manual",
        spec: dict[str, Any] | None = None,
    ) -> str:
        """Record a queued sync with one queued run per stream (and the spec it runs with:
        an `update` while it runs does not change it); returns the sync id."""
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, not {trigger!r}")
        names = list(dict.fromkeys(streams))
        if not names:
            raise ValueError("a sync needs at least one stream")
        sync_id = uuid.uuid4().hex
        with write_tx(self.engine) as conn:
            if _connection_row(conn, connection) is None:
                raise _missing(connection)
            conn.execute(
                insert(syncs).values(
                    id=sync_id,
                    connection=connection,
                    status="queued",
                    full_refresh=full_refresh,
                    trigger=trigger,
                    created_at=utcnow(),
                    spec=spec,
                )
            )
            for stream in names:
                conn.execute(
                    insert(stream_runs).values(
                        sync_id=sync_id,
                        stream=stream,
                        status="queued",
                        rows=0,
                        pages=0,
                        schema_changes=[],
                        warnings=[],
                    )
                )
        return sync_id

    def mark_sync_started(self, sync_id: str) -> None:
        self._update_sync(sync_id, status="running", started_at=utcnow())

    def mark_sync_finished(self, sync_id: str, status: str, error: str | None = None) -> None:
        """End the sync; runs still queued or running end as failed with `error`."""
        if status not in ("succeeded", "failed"):
            raise ValueError(f"a finished sync is 'succeeded' or 'failed', not {status!r}")
        now = utcnow()
        with write_tx(self.engine) as conn:
            self._update_sync(sync_id, conn=conn, status=status, finished_at=now, error=error)
            conn.execute(
                update(stream_runs)
                .where(stream_runs.c.sync_id == sync_id)
                .where(stream_runs.c.status.in_(("queued", "running")))
                .values(
                    status="failed",
                    finished_at=now,
                    error=error or "the sync ended before this stream finished",
                )
            )

    # The names the pipeline calls them by.
    start_sync = mark_sync_started
    finish_sync = mark_sync_finished

    def update_stream_run(self, sync_id: str, stream: str, **fields: Any) -> None:
        """Set some of RUN_FIELDS on one stream run (lists/dicts are stored as JSON)."""
        unknown = set(fields) - RUN_FIELDS
        if unknown:
            raise ValueError(f"unknown stream run fields: {', '.join(sorted(unknown))}")
        if "status" in fields and fields["status"] not in SYNC_STATUSES:
            raise ValueError(f"stream run status must be one of {SYNC_STATUSES}")
        for key in ("schema_changes", "warnings"):
            if key in fields and fields[key] is not None:
                fields[key] = list(fields[key])
        with write_tx(self.engine) as conn:
            result = conn.execute(
                update(stream_runs)
                .where(stream_runs.c.sync_id == sync_id, stream_runs.c.stream == stream)
                .values(**fields)
            )
        if result.rowcount == 0:
            raise NotFoundError(
                f"sync '{sync_id}' has no stream '{stream}' (was its connection deleted?)"
            )

    def get_sync(self, sync_id: str) -> SyncRecord:
        with read_tx(self.engine) as conn:
            row = conn.execute(select(syncs).where(syncs.c.id == sync_id)).mappings().first()
            if row is None:
                raise NotFoundError(f"no sync with id '{sync_id}'")
            return sync_record(conn, row)

    def running_sync(self, connection: str, include_queued: bool = False) -> SyncRecord | None:
        """The newest running sync of `connection` (or queued too, if asked), if any."""
        statuses = ("running", "queued") if include_queued else ("running",)
        with read_tx(self.engine) as conn:
            row = (
                conn.execute(
                    select(syncs)
                    .where(syncs.c.connection == connection, syncs.c.status.in_(statuses))
                    .order_by(syncs.c.created_at.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            return None if row is None else sync_record(conn, row)

    def latest_stream_runs(
        self, connection: str, stream_names: Sequence[str]
    ) -> list[StreamRunRecord]:
        """The latest run of each named stream, in that order; "never" if it never ran.

        A sync refused before it started (failed, never started: another sync of the
        connection was running) says nothing about a stream, so it is passed over.
        """
        r, s = stream_runs.c, syncs.c
        refused = (s.status == "failed") & s.started_at.is_(None)
        newest = (
            select(func.max(r.id))
            .select_from(stream_runs.join(syncs, s.id == r.sync_id))
            .where(s.connection == connection, r.stream.in_(list(stream_names)), ~refused)
            .group_by(r.stream)
        )
        with read_tx(self.engine) as conn:
            rows = conn.execute(select(stream_runs).where(r.id.in_(newest))).mappings()
            found = {row["stream"]: run_record(row) for row in rows}
        return [found.get(n) or StreamRunRecord(None, n, "never") for n in stream_names]

    def refused_syncs(self, connection: str, limit: int = 3) -> list[SyncRecord]:
        """The newest syncs that never started (refused or skipped), newest first."""
        s = syncs.c
        with read_tx(self.engine) as conn:
            rows = (
                conn.execute(
                    select(syncs)
                    .where(s.connection == connection, s.status == "failed")
                    .where(s.started_at.is_(None))
                    .order_by(s.created_at.desc())
                    .limit(limit)
                )
                .mappings()
                .all()
            )
            return [sync_record(conn, row) for row in rows]

    def claim_stream_start(self, sync_id: str, stream: str) -> bool:
        """Move a queued stream run to running; False when it is not queued (another
        delivery started it, or it ended)."""
        with write_tx(self.engine) as conn:
            done = conn.execute(
                update(stream_runs)
                .where(stream_runs.c.sync_id == sync_id, stream_runs.c.stream == stream)
                .where(stream_runs.c.status == "queued")
                .values(status="running", started_at=utcnow())
            )
            return bool(done.rowcount)

    def forget_sync(self, sync_id: str) -> None:
        """Remove a planned sync that never started (it could not be handed to workers)."""
        with write_tx(self.engine) as conn:
            conn.execute(delete(stream_runs).where(stream_runs.c.sync_id == sync_id))
            conn.execute(delete(syncs).where(syncs.c.id == sync_id))

    def _update_sync(self, sync_id: str, conn: Connection | None = None, **values: Any) -> None:
        if conn is None:
            with write_tx(self.engine) as own:
                return self._update_sync(sync_id, own, **values)
        result = conn.execute(update(syncs).where(syncs.c.id == sync_id).values(**values))
        if result.rowcount == 0:
            raise NotFoundError(f"no sync with id '{sync_id}' (was its connection deleted?)")


def _exists(name: str) -> ConflictError:
    return ConflictError(f"connection '{name}' already exists; use `rq connections update {name}`")


def _case_twin(conn: Connection, name: str) -> str | None:
    """A connection whose name is `name` ignoring case (None if there is none)."""
    same = func.lower(connections.c.name) == name.lower()
    found: str | None = conn.execute(select(connections.c.name).where(same).limit(1)).scalar()
    return found


def _refuse_case_twin(conn: Connection, name: str) -> None:
    """Refuse `name` when a connection's name differs from it only in case: the name is
    also an Iceberg namespace and a SQL name, which people (and DuckDB) read ignoring case."""
    twin = _case_twin(conn, name)
    if twin is not None:
        raise SpecError(
            f"connection name '{name}' differs only in case from the existing connection "
            f"'{twin}'; names are unique ignoring case (`{twin}.STREAM` and `{name}.STREAM` "
            f"would read alike in SQL): choose another name, or use `rq connections update {twin}`"
        )


def _connection_row(conn: Connection, name: str) -> RowMapping | None:
    return conn.execute(select(connections).where(connections.c.name == name)).mappings().first()


def open_registry(settings: Settings | None = None) -> Registry:
    """The registry in the catalog's database, its schema ensured, with the vault."""
    settings = settings or get_settings()
    engine = db.create_engine_for(settings.effective_catalog_uri)
    db.ensure_schema(engine)
    return Registry(engine, load_vault(settings))
