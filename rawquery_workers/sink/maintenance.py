"""Keeping a table small and healthy: compaction, manifests, snapshot expiry, orphan files.

    report = maintain_table(tables, namespace, name, policy)

In this order (expiry also runs first: see `maintain_table`), each step its own commit
(none carries sync state: sink/state.py keeps it in the table properties, which every
step leaves as they are):
1. the sync state moves into the table properties if only snapshots hold it (tables
   written before it lived there), so that expiry cannot take it away;
2. compaction: the small live data files, when there are two or more (and every file of
   a keyed table whose key ranges overlap), are read through pyiceberg (applying any delete
   file another engine wrote) and written again as few files of the target size, sorted
   by the declared sort order or else the key (files then hold disjoint key ranges, which
   merges prune on: docs/decisions/012); pyiceberg writes them (field ids, statistics,
   partition values) at `write.target-file-size-bytes`, which maintenance sets to
   RAWQUERY_MERGE_FILE_SIZE for a keyed table and RAWQUERY_TARGET_FILE_SIZE otherwise;
3. manifests: a head listing more than `MAX_MANIFESTS` manifests gets a snapshot of the
   same data files listed in one manifest (pyiceberg has no rewrite_manifests: an append
   of nothing with its manifest merge set to take them all does the same);
4. expiry: snapshots beyond the newest `policy.keep_snapshots` of the table, or older than
   `policy.max_age`, are expired (never a branch's or tag's head);
5. orphans: files under the table's location that no remaining snapshot, manifest or
   metadata log refers to, older than `policy.orphan_grace` (another engine may be
   writing), are deleted.

The caller holds the connection's lease (no sync of it runs), so nothing here races a
commit of ours; a lost race with another engine is planned again (`commit_until_done`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from pyiceberg.conversions import from_bytes
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile, ManifestFile
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update.snapshot import ExpireSnapshots
from pyiceberg.types import IntegerType, LongType, PrimitiveType, StringType

from rawquery_workers.settings import Settings
from rawquery_workers.sink import copy_on_write as cow
from rawquery_workers.sink import state as st
from rawquery_workers.sink import writer
from rawquery_workers.sink.layout import layout_of
from rawquery_workers.sink.tables import CatalogTables, discard
from rawquery_workers.transform.batch import KEY

_Plan = Callable[[Table], tuple[Transaction, list[str]] | None]

MAX_MANIFESTS = 4
SMALL_FRACTION = 16  # a data file below target / 16 on disk is small (see `compactable`)
MAINTAINED = "rq.maintained"  # summary property of maintenance commits: what they did
# Table properties for every table rq maintains: old metadata.json files go with each commit.
# Appends merge manifests once a head lists MERGE_MANIFESTS of them (copy_on_write uses
# merge_append), and old metadata.json files go with each commit.
MERGE_MANIFESTS = "8"
METADATA_PROPERTIES = {
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "2",
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": MERGE_MANIFESTS,
}
_MIN_MERGE = "commit.manifest.min-count-to-merge"


@dataclass(frozen=True, slots=True)
class Policy:
    """What maintenance keeps (RAWQUERY_SNAPSHOTS_KEEP, RAWQUERY_SNAPSHOTS_MAX_AGE_HOURS,
    RAWQUERY_ORPHAN_GRACE_SECONDS, RAWQUERY_TARGET_FILE_SIZE)."""

    keep_snapshots: int = 5
    max_age: timedelta = timedelta(days=7)
    orphan_grace: timedelta = timedelta(hours=1)
    target_file_size: int = 128 * 1024 * 1024
    merge_file_size: int = 16 * 1024 * 1024

    def target_for(self, table: Table) -> int:
        """The target data-file size of `table` (in Arrow bytes, as the writer's)."""
        keyed = bool(table.schema().identifier_field_ids) or KEY in table.schema().column_names
        return min(self.target_file_size, self.merge_file_size) if keyed else self.target_file_size

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            keep_snapshots=settings.snapshots_keep,
            max_age=timedelta(hours=settings.snapshots_max_age_hours),
            orphan_grace=timedelta(seconds=settings.orphan_grace_seconds),
            target_file_size=settings.target_file_size,
            merge_file_size=settings.merge_file_size,
        )


@dataclass(slots=True)
class TableReport:
    """What maintenance did to one table."""

    table: str
    rows: int = 0
    files_before: int = 0
    files_after: int = 0
    compacted: int = 0  # small files rewritten
    manifests_before: int = 0
    manifests_after: int = 0
    snapshots_expired: int = 0
    snapshots_kept: int = 0
    orphans: int = 0
    orphan_bytes: int = 0
    state_moved: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.files_before} -> {self.files_after} data files"]
        if self.compacted:
            parts.append(f"{self.compacted} small files compacted")
        if self.manifests_before != self.manifests_after:
            parts.append(f"manifests {self.manifests_before} -> {self.manifests_after}")
        parts.append(f"{self.snapshots_expired} snapshots expired, {self.snapshots_kept} kept")
        if self.orphans:
            parts.append(f"{self.orphans} orphan files deleted ({self.orphan_bytes:,} bytes)")
        if self.state_moved:
            parts.append("sync state moved into the table properties")
        return f"{self.table}: " + "; ".join(parts)


def maintain_table(
    tables: CatalogTables, namespace: str, name: str, policy: Policy, *, now: datetime | None = None
) -> TableReport:
    """Run every step on `namespace.name` (see the module docstring); what it did."""
    where = f"{namespace}.{name}"
    report = TableReport(where)
    table = tables.load(namespace, name)
    report.files_before = len(cow.live_files(table, table.current_snapshot()))
    report.manifests_before = _manifest_count(table)
    report.state_moved = _keep_state(tables, namespace, name, policy)
    now = now or datetime.now(UTC)
    # expiring first keeps the later commits' metadata.json small (the previous versions
    # kept beside the current one are theirs); expiring last applies the policy to them
    report.snapshots_expired = _expire(tables, namespace, name, policy, now)
    report.compacted = _compact(tables, namespace, name, policy)
    _rewrite_manifests(tables, namespace, name)
    report.snapshots_expired += _expire(tables, namespace, name, policy, now)
    table = tables.load(namespace, name)
    report.orphans, report.orphan_bytes = _delete_orphans(tables, table, policy)
    head = table.current_snapshot()
    report.files_after = len(cow.live_files(table, head))
    report.manifests_after = _manifest_count(table)
    report.snapshots_kept = len(table.metadata.snapshots)
    total = (
        head.summary.additional_properties.get("total-records") if head and head.summary else None
    )
    report.rows = int(total) if total and total.isdigit() else 0
    return report


def needs_maintenance(table: Table, policy: Policy, max_files: int) -> bool:
    """Whether a table crossed a threshold after a sync: more than `max_files` live data
    files that compaction would rewrite (a large keyed table holds many full files), or
    more snapshots than the policy keeps and half as many again."""
    live = cow.live_files(table, table.current_snapshot())
    many = len(compactable(table, live, policy.target_for(table))) > max_files
    return many or len(table.metadata.snapshots) > policy.keep_snapshots * 1.5


# --- the steps ------------------------------------------------------------------------------


def _keep_state(tables: CatalogTables, namespace: str, name: str, policy: Policy) -> bool:
    """Set the maintained tables' properties, and the snapshot-held state as table
    properties when none are there yet; whether state was moved."""
    where = f"{namespace}.{name}"
    for _ in tables.attempts(where):
        table = tables.load(namespace, name)
        properties = table.properties
        wanted = {
            **METADATA_PROPERTIES,
            "write.target-file-size-bytes": str(policy.target_for(table)),
        }
        update = {k: v for k, v in wanted.items() if properties.get(k) != v}
        state = (
            {}
            if any(k.startswith(st.TABLE_PREFIX) for k in properties)
            else st.state_at(table.metadata)
        )
        if state:
            update |= st.table_state_update(table.metadata, state)[0]
            # the commit that wrote it is the head's or older, not the next one
            update[st.SEQUENCE] = str(st.head_sequence(table.metadata))
        if not update:
            return False
        tx = table.transaction()
        tx.set_properties(update)
        if tables.try_commit(tx, where):
            return bool(state)
    return False


def _compact(tables: CatalogTables, namespace: str, name: str, policy: Policy) -> int:
    """Rewrite the small live files (and, in a keyed table, files whose key ranges overlap)
    as few target-sized ones sorted by key; how many were rewritten."""
    compacted: list[int] = [0]

    def plan(table: Table) -> tuple[Transaction, list[str]] | None:
        live = cow.live_files(table, table.current_snapshot())
        picked = compactable(table, live, policy.target_for(table))
        if len(picked) < 2:
            compacted[0] = 0
            return None
        rows = _read_files(table, picked)
        order = sort_columns(table)
        if order:
            rows = rows.sort_by([(c, "ascending") for c in order if c in rows.column_names])
        written = list(_dataframe_to_data_files(table.metadata, rows, table.io))
        tx = cow.build_transaction(
            table,
            ref=st.MAIN,
            add_paths=[],
            add_files=written,
            drop_files=picked,
            properties={MAINTAINED: f"compacted {len(picked)} files into {len(written)}"},
        )
        compacted[0] = len(picked)
        return tx, [f.file_path for f in written]

    _commit_step(tables, namespace, name, plan)
    return compacted[0]


def compactable(table: Table, live: list[DataFile], target: int) -> list[DataFile]:
    """The files compaction rewrites: those below `target / SMALL_FRACTION` on disk (the
    target counts Arrow bytes, which Parquet holds in about an eighth), and, when a file
    that is not small overlaps another's key range, every file: merges prune files by key
    range, so a keyed table is re-clustered once its ranges stop being disjoint."""
    small = [f for f in live if f.file_size_in_bytes < target // SMALL_FRACTION]
    large = [f for f in live if f.file_size_in_bytes >= target // SMALL_FRACTION]
    column = _key_column(table)
    if column is None or len(large) < 2:
        return small
    field = table.schema().find_field(column)
    kind = field.field_type
    assert isinstance(kind, PrimitiveType)  # _key_column: a number or a string
    ranges = []
    for f in large:
        low = (f.lower_bounds or {}).get(field.field_id)
        high = (f.upper_bounds or {}).get(field.field_id)
        if low is None or high is None:
            return small
        ranges.append((from_bytes(kind, low), from_bytes(kind, high)))
    ranges.sort()
    overlapping = any(ranges[n][1] >= ranges[n + 1][0] for n in range(len(ranges) - 1))
    return live if overlapping else small


def sort_columns(table: Table) -> list[str]:
    """What compaction sorts by: the declared sort order, else the key (a one-column key in
    its own type: numbers in number order), else nothing."""
    declared = layout_of(table.metadata).sort_by
    if declared:
        return list(declared)
    column = _key_column(table)
    if column is not None:
        return [column]
    return [KEY] if KEY in table.schema().column_names else []


def _key_column(table: Table) -> str | None:
    """The one identifier column of a table whose key is one number or string."""
    schema = table.schema()
    ids = schema.identifier_field_ids
    if len(ids) != 1:
        return None
    field = schema.find_field(ids[0])
    kind = field.field_type
    return field.name if isinstance(kind, (LongType, IntegerType, StringType)) else None


def _rewrite_manifests(tables: CatalogTables, namespace: str, name: str) -> None:
    """An append of nothing whose manifest merge takes every manifest: the head's files,
    unchanged, listed in as few manifests as their size allows."""

    def plan(table: Table) -> tuple[Transaction, list[str]] | None:
        count = _manifest_count(table)
        if count <= MAX_MANIFESTS:
            return None
        tx = table.transaction()
        tx.set_properties({_MIN_MERGE: "2", "commit.manifest-merge.enabled": "true"})
        properties = {MAINTAINED: f"rewrote {count} manifests"}
        with tx.update_snapshot(snapshot_properties=properties).merge_append():
            pass
        tx.set_properties({_MIN_MERGE: MERGE_MANIFESTS})
        return tx, []

    _commit_step(tables, namespace, name, plan)


def _expire(tables: CatalogTables, namespace: str, name: str, policy: Policy, now: datetime) -> int:
    where = f"{namespace}.{name}"
    for _ in tables.attempts(where):
        table = tables.load(namespace, name)
        expired = expirable(table.metadata, policy, now)
        if not expired:
            return 0
        tx = table.transaction()
        ExpireSnapshots(tx).by_ids(expired).commit()
        if tables.try_commit(tx, where):
            return len(expired)
    return 0


def expirable(metadata: TableMetadata, policy: Policy, now: datetime) -> list[int]:
    """The snapshots the policy lets go: beyond the newest `keep_snapshots`, or older than
    `max_age`; never the head of a branch or tag."""
    protected = {ref.snapshot_id for ref in metadata.refs.values()}
    newest_first = sorted(metadata.snapshots, key=lambda s: s.timestamp_ms, reverse=True)
    oldest_kept = (now - policy.max_age).timestamp() * 1000
    return [
        s.snapshot_id
        for i, s in enumerate(newest_first)
        if s.snapshot_id not in protected
        and (i >= policy.keep_snapshots or s.timestamp_ms < oldest_kept)
    ]


def _delete_orphans(tables: CatalogTables, table: Table, policy: Policy) -> tuple[int, int]:
    """Delete files under the table's location nothing refers to; (count, bytes)."""
    where = ".".join(table.name())

    def clean() -> tuple[int, int]:
        used = _referenced(table)
        location = table.location()
        cutoff = time.time() - policy.orphan_grace.total_seconds()
        count = size = 0
        for info in writer.file_infos(table.io, location):
            if info.path in used or (info.mtime is not None and info.mtime.timestamp() > cutoff):
                continue
            if writer.delete_path(table.io, location, info.path):
                count, size = count + 1, size + (info.size or 0)
        return count, size

    return tables.guard(where, clean)


# --- helpers --------------------------------------------------------------------------------


def _commit_step(tables: CatalogTables, namespace: str, name: str, plan: _Plan) -> None:
    """Commit what `plan` builds on the latest head (None: nothing to do), planning again
    after a lost race and deleting the files the lost plan wrote."""
    where = f"{namespace}.{name}"
    for _ in tables.attempts(where):
        table = tables.load(namespace, name)
        planned = tables.guard(where, lambda t=table: plan(t))  # type: ignore[misc]
        if planned is None:
            return
        tx, scratch = planned
        if tables.try_commit(tx, where):
            return
        discard(table, scratch)


def _read_files(table: Table, files: list[DataFile]) -> pa.Table:
    """The rows of `files` in the table's current schema (deletes applied)."""
    wanted = {f.file_path for f in files}
    tasks = [t for t in table.scan().plan_files() if t.file.file_path in wanted]
    scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
    return scan.to_table(tasks)


def _manifest_count(table: Table) -> int:
    head = table.current_snapshot()
    return 0 if head is None else len(head.manifests(table.io))


def _referenced(table: Table) -> set[str]:
    """Filesystem paths of every file the table's metadata refers to."""
    metadata, io = table.metadata, table.io
    paths = {writer.fs_path(io, table.metadata_location)}
    paths |= {writer.fs_path(io, entry.metadata_file) for entry in metadata.metadata_log}
    manifests: dict[str, ManifestFile] = {}
    for snapshot in metadata.snapshots:
        paths.add(writer.fs_path(io, snapshot.manifest_list))
        for manifest in snapshot.manifests(io):
            manifests.setdefault(manifest.manifest_path, manifest)
    for path, manifest in manifests.items():
        paths.add(writer.fs_path(io, path))
        for entry in manifest.fetch_manifest_entry(io, discard_deleted=False):
            paths.add(writer.fs_path(io, entry.data_file.file_path))
    for stats in metadata.statistics:
        paths.add(writer.fs_path(io, stats.statistics_path))
    return paths
