"""IcebergSink: rawquery's tables in the Iceberg catalog, one namespace per connection.

    prepare(batch)            create the table or evolve its schema (own small commit)
    write_files(data)         Parquet files under the table's data folder, not yet visible
    open_files()              the same, a chunk at a time (a segment larger than memory)
    commit(files, mode=...)   ONE snapshot: copy-on-write delete + add files + rq.* state
    stage_replace / finish_replace
                              a full refresh: segments are committed to the branch
                              `rq-replace-<sync_id>` (merged there, newest wins), then one
                              snapshot on main swaps every row in at once

Every data commit carries `rq.sync_id` and `rq.segment`; before committing (and after a
lost race) the table's snapshots are searched for them, so a redelivered segment commits
nothing twice. pyiceberg's own commit retry is switched off on our tables (it re-applies
appends blindly): on a conflict this class reloads the table, re-checks the history and
re-plans the whole commit against the new head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import TableAlreadyExistsError
from pyiceberg.expressions import GreaterThanOrEqual
from pyiceberg.table import Table, Transaction
from pyiceberg.table.update.snapshot import ManageSnapshots

from rawquery_workers.errors import NotFoundError, StaleSyncError
from rawquery_workers.faults import pause_point
from rawquery_workers.sink import copy_on_write as cow
from rawquery_workers.sink import layout, writer
from rawquery_workers.sink import state as st
from rawquery_workers.sink.schema import (
    CREATE_PROPERTIES,
    arrow_schema,
    iceberg_type,
    plan_evolution,
    retypable_of,
    retypable_property,
    wanted_schema,
)
from rawquery_workers.sink.table_files import TableFiles
from rawquery_workers.sink.tables import CatalogTables
from rawquery_workers.transform.batch import KEY, SYNCED_AT, KnownSchema, TableBatch
from rawquery_workers.transform.cursor import at_or_after
from rawquery_workers.transform.infer import column_type_of

Mode = Literal["append", "merge", "replace"]
DEFAULT_TARGET_FILE_SIZE = 128 * 1024 * 1024
DEFAULT_MERGE_FILE_SIZE = 16 * 1024 * 1024


class IcebergSink:
    """Tables `NAMESPACE.TABLE` in one catalog; safe to share between threads."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        target_file_size: int = DEFAULT_TARGET_FILE_SIZE,
        merge_file_size: int = DEFAULT_MERGE_FILE_SIZE,
        max_commit_attempts: int = 30,
    ) -> None:
        self.catalog = catalog
        self.target_file_size = target_file_size
        # files of keyed tables (a merge rewrites each file holding a changed key)
        self.merge_file_size = min(target_file_size, merge_file_size)
        self.tables = CatalogTables(catalog, max_commit_attempts)

    # --- tables -------------------------------------------------------------------------

    def all_tables(self) -> list[tuple[str, str]]:
        """Every (namespace, table) in the catalog."""
        return [(ns, t) for ns in self.tables.namespaces() for t in self.tables.names(ns)]

    def list_tables(self, namespace: str) -> list[str]:
        """The table names of `namespace` ([] when it does not exist)."""
        return self.tables.names(namespace)

    def drop_table(self, namespace: str, table: str) -> bool:
        """Remove the table from the catalog and delete its files; False if it did not exist."""
        loaded = self.tables.load_or_none(namespace, table)
        if loaded is None or not self.tables.drop(namespace, table):
            return False
        self.tables.guard(namespace, lambda: writer.delete_tree(loaded.io, loaded.location()))
        return True

    def drop_namespace_tables(self, namespace: str) -> list[str]:
        """Drop every table of `namespace`, then the namespace; the dropped table names."""
        dropped = [t for t in self.list_tables(namespace) if self.drop_table(namespace, t)]
        self.tables.drop_namespace(namespace)
        return dropped

    # --- schema -------------------------------------------------------------------------

    def known_schema(self, namespace: str, table: str) -> KnownSchema | None:
        """The table's columns as Arrow types and its retypable columns; None if absent."""
        loaded = self.tables.load_or_none(namespace, table)
        return None if loaded is None else _known(loaded)

    def prepare(self, namespace: str, batch: TableBatch) -> list[str]:
        """Create the batch's table, or evolve it to hold the batch; one line per change."""
        where = f"{namespace}.{batch.name}"
        wanted, null_only = wanted_schema(batch, where)
        for _ in self.tables.attempts(where):
            table = self.tables.load_or_none(namespace, batch.name)
            if table is None:
                try:
                    return self._create(namespace, batch, wanted, null_only)
                except TableAlreadyExistsError:
                    continue
            current = retypable_of(table.properties)
            schema = arrow_schema(table.schema())
            evolution = plan_evolution(schema, current, wanted, null_only)
            if not evolution.changes(current):
                return []
            names = [*schema.names, *(f.name for f in evolution.adds)]
            keys = layout.keys_to_declare(table.metadata, batch, names, evolution.retypable)
            tx = table.transaction()
            if evolution.schema_changed or keys:
                # required key columns on a table without rows (sink/layout.py)
                with tx.update_schema(allow_incompatible_changes=bool(keys)) as update:
                    for f in evolution.retypes:  # a one-part path: names may hold dots
                        update.delete_column((f.name,))
                    added = (*evolution.retypes, *evolution.adds)
                    for f in added:
                        update.add_column((f.name,), iceberg_type(f.type), required=f.name in keys)
                    layout.declare_keys(update, keys, frozenset(f.name for f in added))
            lines = layout.declare_layout_later(tx, batch, evolution.retypable, where)
            tx.set_properties(retypable_property(evolution.retypable))
            if self.tables.try_commit(tx, where):
                return [*evolution.lines, *lines]
        raise AssertionError("attempts() raises when exhausted")

    def _create(
        self, namespace: str, batch: TableBatch, wanted: pa.Schema, null_only: frozenset[str]
    ) -> list[str]:
        """Create the batch's table: its key columns required and its identifier fields, its
        partition spec and sort order from the batch's layout (sink/layout.py)."""
        where = f"{namespace}.{batch.name}"
        null_only = null_only & set(wanted.names)
        schema = layout.creation_schema(wanted, batch.keys, null_only)
        spec, order, lines = layout.creation_layout(schema, wanted, batch, null_only, where)
        self.tables.ensure_namespace(namespace)
        properties = {**CREATE_PROPERTIES, **retypable_property(null_only)}
        self.tables.guard(
            where,
            lambda: self.catalog.create_table(
                (namespace, batch.name),
                schema,
                partition_spec=spec,
                sort_order=order,
                properties=properties,
            ),
        )
        return [f"created table {where} with {len(wanted)} columns", *lines]

    # --- writing ------------------------------------------------------------------------

    def write_files(
        self,
        namespace: str,
        table: str,
        data: pa.Table,
        *,
        sync_id: str,
        segment: int,
        synced_at: datetime | None = None,
    ) -> list[str]:
        """Write `data` (one row per `_rq_key`: the last wins) as Parquet files in the
        table's data folder; they are invisible until `commit`/`stage_replace` adds them."""
        loaded = self.tables.load(namespace, table)
        files = self._files(loaded, namespace, table, sync_id, segment, synced_at)
        try:
            files.write(data, _known(loaded))
            return files.close()
        finally:
            files.abort()

    def open_files(
        self,
        namespace: str,
        table: str,
        *,
        sync_id: str,
        segment: int,
        synced_at: datetime | None = None,
        keys: tuple[str, ...] = (),
        parent_key: str | None = None,
    ) -> TableFiles:
        """The table's files for one segment, written a chunk at a time (table_files.py);
        `keys`: the batch's primary-key columns, `parent_key` a child table's link column."""
        loaded = self.tables.load(namespace, table)
        return self._files(loaded, namespace, table, sync_id, segment, synced_at, keys, parent_key)

    def _files(
        self,
        loaded: Table,
        namespace: str,
        table: str,
        sync_id: str,
        segment: int,
        synced_at: datetime | None,
        keys: tuple[str, ...] = (),
        parent_key: str | None = None,
    ) -> TableFiles:
        where = f"{namespace}.{table}"
        stamp = synced_at or datetime.now(UTC)
        return TableFiles(
            loaded.io,
            writer.sync_dir(loaded.location(), sync_id),
            writer.file_stem(segment),
            where=where,
            target_size=self.merge_file_size if keys or parent_key else self.target_file_size,
            synced_at=stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC),
            guard=lambda call: self.tables.guard(where, call),
            keys=keys,
            parent_key=parent_key,
        )

    def commit(
        self,
        namespace: str,
        table: str,
        files: Sequence[str],
        *,
        mode: Mode,
        key_column: str | None = None,
        delete_keys: pa.Array | None = None,
        parent_key_column: str | None = None,
        parent_keys: pa.Array | None = None,
        state: Mapping[str, str] | None = None,
        sync_id: str,
        segment: int,
        fence: int | None = None,
    ) -> bool:
        """Make `files` visible in ONE snapshot on main, after deleting (merge) the rows
        whose `key_column` (default `_rq_key`) is in `delete_keys` (default: the keys the
        files hold), the rows whose `parent_key_column` is in `parent_keys` (child tables),
        or (replace) every row. The snapshot carries `rq.sync_id`, `rq.segment` and `state`
        (keys `rq.*`). False when this segment was already committed: nothing changes.
        `fence`: the table's `head_sequence` when the sync started; a commit by another
        sync since then raises StaleSyncError instead of being committed over."""
        if mode not in ("append", "merge", "replace"):
            raise ValueError(f"mode must be append, merge or replace, not {mode!r}")
        props = st.snapshot_properties(state or {}, sync_id=sync_id, segment=segment)
        return self._commit_segment(
            namespace, table, st.MAIN, files, mode=mode, key_column=key_column,
            delete_keys=delete_keys, parent_key_column=parent_key_column,
            parent_keys=parent_keys, props=props, sync_id=sync_id, segment=segment,
            fence=fence,
        )  # fmt: skip

    def head_sequence(self, namespace: str, table: str) -> int:
        """The table's newest sequence number (0: no such table), a sync's `fence`."""
        loaded = self.tables.load_or_none(namespace, table)
        return 0 if loaded is None else st.head_sequence(loaded.metadata)

    def stage_replace(
        self,
        namespace: str,
        table: str,
        files: Sequence[str],
        *,
        sync_id: str,
        segment: int,
        state: Mapping[str, str] | None = None,
        parent_key_column: str | None = None,
        parent_keys: pa.Array | None = None,
    ) -> bool:
        """Commit one segment of a full refresh to the branch `rq-replace-<sync_id>`
        (readers of main see nothing yet). Keyed tables are merged on the branch, so a key
        repeated by a later segment keeps only its newest row; a child table also loses the
        rows of `parent_keys`. False when already staged, or the refresh already finished."""
        loaded = self._with_main_snapshot(namespace, table)
        if st.replaced_in(loaded.metadata, sync_id):
            return False
        keyed = KEY in loaded.schema().column_names
        props = st.snapshot_properties(state or {}, sync_id=sync_id, segment=segment)
        return self._commit_segment(
            namespace, table, st.replace_branch(sync_id), files,
            mode="merge" if keyed else "append", key_column=KEY, delete_keys=None,
            parent_key_column=parent_key_column, parent_keys=parent_keys, props=props,
            sync_id=sync_id, segment=segment,
        )  # fmt: skip

    def _with_main_snapshot(self, namespace: str, table: str) -> Table:
        """The table, given an empty first snapshot on main if it has none: Iceberg only
        branches from a snapshot, and a new table's first full refresh stages on a branch."""
        where = f"{namespace}.{table}"
        for _ in self.tables.attempts(where):
            loaded = self.tables.load(namespace, table)
            if loaded.metadata.snapshot_by_name(st.MAIN) is not None:
                return loaded
            tx = loaded.transaction()
            with tx.update_snapshot().fast_append():
                pass
            if self.tables.try_commit(tx, where):
                return self.tables.load(namespace, table)
        raise AssertionError("attempts() raises when exhausted")

    def finish_replace(
        self,
        namespace: str,
        table: str,
        *,
        sync_id: str,
        state: Mapping[str, str] | None = None,
        segment: int | None = None,
        fence: int | None = None,
    ) -> bool:
        """Swap the staged rows in: ONE snapshot on main drops every current file and adds
        every file of the branch (an empty table if nothing was staged), carries
        `rq.replaced=true` and `state`, and removes the branch. False if already done or
        the table does not exist. `fence` as for `commit`."""
        if self.tables.load_or_none(namespace, table) is None:
            return False
        branch = st.replace_branch(sync_id)
        props = st.snapshot_properties(state or {}, sync_id=sync_id, segment=segment, replaced=True)

        def build(loaded: Table) -> tuple[Transaction, list[str]]:
            _check_fence(loaded, namespace, table, fence, sync_id)
            pause_point("commit", "swap")
            head = loaded.metadata.snapshot_by_name(branch)
            tx = cow.build_transaction(
                loaded,
                ref=st.MAIN,
                add_paths=[],
                add_files=cow.live_files(loaded, head),
                drop_files=cow.live_files(loaded, loaded.current_snapshot()),
                properties=props,
                remove_branch=branch if head is not None else None,
            )
            return tx, []

        return self.tables.commit_until_done(
            namespace, table, lambda m: st.replaced_in(m, sync_id), build
        )

    def abort_replace(self, namespace: str, table: str, sync_id: str) -> bool:
        """Forget a full refresh that will not finish (drop its branch); main is untouched."""
        where = f"{namespace}.{table}"
        branch = st.replace_branch(sync_id)
        for _ in self.tables.attempts(where):
            loaded = self.tables.load_or_none(namespace, table)
            if loaded is None or branch not in loaded.metadata.refs:
                return False
            tx = loaded.transaction()
            ManageSnapshots(tx).remove_branch(branch).commit()
            if self.tables.try_commit(tx, where):
                return True
        raise AssertionError("attempts() raises when exhausted")

    # --- state --------------------------------------------------------------------------

    def committed_state(
        self, namespace: str, table: str, *, staged_for: str | None = None
    ) -> dict[str, str]:
        """The `rq.*` properties of the newest commit on main that has them ({} if none).
        With `staged_for=SYNC_ID`: the state of that full refresh (its branch while it is
        staged, main's once it finished, {} when it has staged nothing)."""
        loaded = self.tables.load_or_none(namespace, table)
        if loaded is None:
            return {}
        metadata = loaded.metadata
        if staged_for is None:
            return st.state_at(metadata)
        branch = st.replace_branch(staged_for)
        if branch in metadata.refs:
            return st.state_at(metadata, branch)
        main = st.state_at(metadata)
        return main if main.get(st.SYNC_ID) == staged_for else {}

    def segment_committed(self, namespace: str, table: str, sync_id: str, segment: int) -> bool:
        loaded = self.tables.load_or_none(namespace, table)
        return loaded is not None and st.segment_in(loaded.metadata, sync_id, segment)

    # --- maintenance and reading --------------------------------------------------------

    def cleanup_orphans(self, namespace: str, table: str, sync_id: str) -> list[str]:
        """Delete the files sync `sync_id` wrote that no snapshot reachable from a ref uses
        (an abandoned or crashed sync; never call it while that sync still runs). Drops the
        sync's full-refresh branch too. Returns the deleted paths."""
        self.abort_replace(namespace, table, sync_id)
        loaded = self.tables.load_or_none(namespace, table)
        if loaded is None:
            return []
        directory = writer.sync_dir(loaded.location(), sync_id)

        def clean() -> list[str]:
            present = writer.list_files(loaded.io, directory)
            if not present:
                return []
            used = cow.referenced_paths(loaded)
            orphans = [p for p in present if p not in used]
            writer.delete_paths(loaded.io, directory, orphans)
            writer.remove_empty_dir(loaded.io, directory)
            return orphans

        return self.tables.guard(f"{namespace}.{table}", clean)

    def scan_arrow(
        self, namespace: str, table: str, columns: Sequence[str] | None = None
    ) -> pa.RecordBatchReader:
        """The table's current rows as a stream of Arrow batches."""
        loaded = self.tables.load_or_none(namespace, table)
        if loaded is None:
            raise NotFoundError(f"table {namespace}.{table} does not exist")
        fields = tuple(columns) if columns else ("*",)
        return loaded.scan(selected_fields=fields).to_arrow_batch_reader()

    def rows_at_or_after(
        self, namespace: str, table: str, column: str, since: str, before: datetime
    ) -> pa.Table | None:
        """The rows of syncs that started before `before` whose `column` is at or after
        `since` (compared in the column's type); None when the table or column is absent."""
        loaded = self.tables.load_or_none(namespace, table)
        if loaded is None or column not in loaded.schema().column_names:
            return None
        where = f"{namespace}.{table}"
        try:  # pyiceberg filters (and prunes files) where `since` converts to the type
            at_least = GreaterThanOrEqual(column, since)  # type: ignore[call-arg,arg-type]
            reader = self.tables.guard(
                where, loaded.scan(row_filter=at_least).to_arrow_batch_reader
            )
        except (ValueError, TypeError):
            reader = self.tables.guard(where, loaded.scan().to_arrow_batch_reader)
        column_type = column_type_of(reader.schema.field(column).type) or "string"
        names = reader.schema.names
        stamp = (
            pa.scalar(before, reader.schema.field(SYNCED_AT).type) if SYNCED_AT in names else None
        )
        kept: list[pa.RecordBatch] = []
        for batch in reader:  # a batch at a time: memory holds the matching rows only
            rows, _ = at_or_after(batch.column(column), column_type, since)
            batch = batch if rows is None else batch.take(pa.array(rows, pa.int64()))
            if stamp is not None:
                batch = batch.filter(pc.fill_null(pc.less(batch.column(SYNCED_AT), stamp), True))
            kept.append(batch)
        return pa.Table.from_batches(kept, schema=reader.schema)

    def planned_parquet_files(self, namespace: str, table: str) -> list[str] | None:
        """The data files of the current snapshot (as stored, e.g. file:// or s3:// URIs),
        or None when some need delete files applied (then use `scan_arrow`). Files written
        before a column was added lack it: read them by name (DuckDB: union_by_name)."""
        loaded = self.tables.load_or_none(namespace, table)
        if loaded is None:
            raise NotFoundError(f"table {namespace}.{table} does not exist")
        tasks = list(loaded.scan().plan_files())
        if any(task.delete_files for task in tasks):
            return None
        return [task.file.file_path for task in tasks]

    # --- internals ----------------------------------------------------------------------

    def _commit_segment(
        self,
        namespace: str,
        table: str,
        ref: str,
        files: Sequence[str],
        *,
        mode: Mode,
        key_column: str | None,
        delete_keys: pa.Array | None,
        parent_key_column: str | None,
        parent_keys: pa.Array | None,
        props: dict[str, str],
        sync_id: str,
        segment: int,
        fence: int | None = None,
    ) -> bool:
        where = f"{namespace}.{table}"
        loaded = self.tables.load(namespace, table)
        if st.segment_in(loaded.metadata, sync_id, segment):
            return False
        scratch = writer.sync_dir(loaded.location(), sync_id)
        column = key_column or KEY
        read: list[pa.Array] = []  # the files' keys, read once, and only if rows may match

        def deletion_tests() -> list[tuple[str, pa.Array | pa.ChunkedArray]]:
            tests: list[tuple[str, pa.Array | pa.ChunkedArray]] = []
            if mode == "merge":
                if delete_keys is None and not read:
                    read.append(
                        self.tables.guard(where, lambda: cow.read_column(loaded.io, files, column))
                    )
                tests.append((column, delete_keys if delete_keys is not None else read[0]))
            if parent_key_column is not None and parent_keys is not None:
                tests.append((parent_key_column, parent_keys))
            return tests

        def build(current: Table) -> tuple[Transaction, list[str]]:
            if ref == st.MAIN:
                _check_fence(current, namespace, table, fence, sync_id)
                pause_point("commit", segment)
            schema = arrow_schema(current.schema())
            tests = deletion_tests() if st.holds_rows(current.metadata, ref) else []
            typed = [
                (c, cow.value_set(v, schema.field(c).type, f"{where}.{c}"))
                for c, v in tests
                if c in schema.names
            ]
            deletion = cow.Deletion(
                everything=mode == "replace", tests=tuple((c, v) for c, v in typed if len(v))
            )
            stem = writer.file_stem(f"{segment}-rw")
            drop, rewritten = cow.plan_deletes(current, ref, deletion, scratch, stem)
            tx = cow.build_transaction(
                current,
                ref=ref,
                add_paths=[*files, *rewritten],
                drop_files=drop,
                properties=props,
            )
            return tx, rewritten

        return self.tables.commit_until_done(
            namespace, table, lambda m: st.segment_in(m, sync_id, segment), build
        )


def _check_fence(
    current: Table, namespace: str, table: str, fence: int | None, sync_id: str
) -> None:
    """The fencing check, made on the head the commit is built on: the catalog accepts the
    commit only while that head is current, so no commit of another sync slips between."""
    if fence is None:
        return
    other = st.foreign_commit(current.metadata, fence, sync_id)
    if other is not None:
        raise StaleSyncError(
            f"table {namespace}.{table}: sync {other} committed to it after sync {sync_id} "
            "started, so this sync no longer holds the connection (its lease ran out while "
            "it was paused or cut off); it stops without writing. The newer sync's data "
            "stays; sync again to continue from it"
        )


def _known(loaded: Table) -> KnownSchema:
    schema, retypable = arrow_schema(loaded.schema()), retypable_of(loaded.properties)
    return KnownSchema(schema, retypable, layout.layout_of(loaded.metadata))
