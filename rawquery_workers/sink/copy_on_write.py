"""One Iceberg snapshot per commit: remove matching rows (copy-on-write), add new files.

Why not pyiceberg's `Transaction.delete`: it reads every file that might match in full and,
for a predicate with more than 200 literals, every file of the table (figures in
docs/decisions/021). Here, candidate files are first pruned with a min/max range of the
values, then by each file's own bounds (does any value fall inside them?), then only the
tested columns are read to find which files really hold a match; only those are read in
full and rewritten without the matched rows. A merge's cost is so the files it touches:
keyed tables are written in small files (RAWQUERY_MERGE_FILE_SIZE), clustered by key when
maintained (docs/decisions/012).
The deleted and rewritten files and the new files go into ONE snapshot (an overwrite, or a
fast append when nothing is deleted) that carries the commit's `rq.*` properties.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.conversions import from_bytes
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    GreaterThanOrEqual,
    LessThanOrEqual,
    Or,
)
from pyiceberg.io import FileIO
from pyiceberg.manifest import DataFile, ManifestFile
from pyiceberg.table import Table, TableProperties, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Operation, Snapshot, ancestors_of
from pyiceberg.table.update.snapshot import ManageSnapshots, _MergeAppendFiles, _OverwriteFiles
from pyiceberg.types import PrimitiveType
from pyiceberg.utils.properties import property_as_bool, property_as_int

from rawquery_workers.errors import SinkError
from rawquery_workers.sink import state as st
from rawquery_workers.sink.writer import describe_file, fs_path, matching_rows, rewrite_without

# Files probed (key columns read, is_in against the segment's keys) at once. Each probe
# holds a column and a hash of the value set, so peak memory grows with it; 2 keeps the
# 1M-record sync's commit peak below its transform peak (docs/decisions/021).
_THREADS = 2


@dataclass(frozen=True, slots=True)
class Deletion:
    """Rows to remove first: all of them, or those whose `column` value is in `values`."""

    everything: bool = False
    tests: tuple[tuple[str, pa.Array], ...] = ()


def value_set(values: pa.Array | pa.ChunkedArray, target: pa.DataType, where: str) -> pa.Array:
    """The non-null `values` cast to the column type `target`. Not made distinct: `is_in`
    hashes its value set anyway, so a second hash pass would only cost time."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    array = array.drop_null()
    if array.type != target:
        try:
            array = pc.cast(array, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SinkError(
                f"{where}: keys of type {array.type} cannot be compared with a {target} "
                f"column ({str(exc).splitlines()[0]})"
            ) from None
    return array


def read_column(io: FileIO, paths: Sequence[str], column: str) -> pa.Array:
    """One column of the given data files, concatenated (string when no file holds it)."""
    chunks: list[pa.Array] = []
    for path in paths:
        with io.new_input(path).open() as stream:
            parquet = pq.ParquetFile(stream)
            if column in parquet.schema_arrow.names:
                chunks += parquet.read(columns=[column]).column(column).chunks
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


def live_files(table: Table, snapshot: Snapshot | None) -> list[DataFile]:
    if snapshot is None:
        return []
    tasks = table.scan(snapshot_id=snapshot.snapshot_id).plan_files()
    return [task.file for task in tasks]


def plan_deletes(
    table: Table, ref: str, deletion: Deletion, scratch_dir: str, stem: str
) -> tuple[list[DataFile], list[str]]:
    """(files to drop, rewritten files to add) so that `ref` loses the rows of `deletion`."""
    head = table.metadata.snapshot_by_name(ref)
    if head is None:
        return [], []
    if deletion.everything:
        return live_files(table, head), []
    if not deletion.tests:
        return [], []
    scan = table.scan(row_filter=_prune_filter(deletion.tests), snapshot_id=head.snapshot_id)
    tasks = list(scan.plan_files())
    if any(task.delete_files for task in tasks):
        raise SinkError(
            f"{'.'.join(table.name())}: the table has row-level delete files (written by "
            "another engine); rawquery merges by rewriting files and cannot apply them"
        )
    files = files_holding(table, [task.file for task in tasks], deletion.tests)
    with ThreadPoolExecutor(_THREADS) as pool:
        found = list(
            pool.map(lambda f: matching_rows(table.io, f.file_path, deletion.tests), files)
        )
        dropped: list[DataFile] = []
        jobs: list[tuple[str, pa.ChunkedArray, str]] = []
        for n, (data_file, hit) in enumerate(zip(files, found, strict=True)):
            if hit is None:
                continue
            mask, matches, rows = hit
            dropped.append(data_file)
            if matches < rows:
                jobs.append((data_file.file_path, mask, f"{scratch_dir}/{stem}-{n}.parquet"))
        written = list(pool.map(lambda job: rewrite_without(table.io, *job), jobs))
    return dropped, written


def files_holding(
    table: Table, files: list[DataFile], tests: Sequence[tuple[str, pa.Array]]
) -> list[DataFile]:
    """The `files` whose min/max bounds of a tested column hold one of its values: the scan
    pruned by one range over all of them, which scattered keys make the whole table."""
    schema = table.schema()
    checks: list[tuple[int, PrimitiveType, pa.Array]] = []
    for column, values in tests:
        prunable = pa.types.is_string(values.type) or pa.types.is_int64(values.type)
        if not prunable or "." in column or len(values) == 0:
            return files  # a test that cannot prune keeps every file
        field = schema.find_field(column)
        if not isinstance(field.field_type, PrimitiveType):
            return files
        checks.append((field.field_id, field.field_type, values))

    def may_hold(data_file: DataFile) -> bool:
        lower, upper = data_file.lower_bounds or {}, data_file.upper_bounds or {}
        for field_id, kind, values in checks:
            if field_id not in lower or field_id not in upper:
                return True  # no bounds (or a string too long for them): it may
            low, high = from_bytes(kind, lower[field_id]), from_bytes(kind, upper[field_id])
            inside = pc.and_(pc.greater_equal(values, low), pc.less_equal(values, high))
            if pc.any(inside).as_py():
                return True
        return False

    return [f for f in files if may_hold(f)]


def _prune_filter(tests: Iterable[tuple[str, pa.Array]]) -> BooleanExpression:
    """A min/max range per tested column: files whose bounds miss every range are skipped."""
    ranges: list[BooleanExpression] = []
    for column, values in tests:
        if len(values) == 0:
            continue
        prunable = pa.types.is_string(values.type) or pa.types.is_int64(values.type)
        if not prunable or "." in column:  # a dot would read as a nested field
            return AlwaysTrue()
        bounds = pc.min_max(values)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        # pyiceberg's predicates take (term, literal); mypy sees only their pydantic fields
        at_least = GreaterThanOrEqual(column, low)  # type: ignore[call-arg,arg-type]
        at_most = LessThanOrEqual(column, high)  # type: ignore[call-arg,arg-type]
        ranges.append(And(at_least, at_most))
    if not ranges:
        return AlwaysTrue()
    return ranges[0] if len(ranges) == 1 else Or(*ranges)


class _Transaction(Transaction):
    """pyiceberg's Transaction, computing `table_metadata` once per staged state.

    pyiceberg rebuilds it from the base metadata and the staged updates on every access,
    ending in a deep copy of the whole metadata (every schema's every field), many times a
    commit: slow for wide tables (docs/decisions/021). The metadata models are frozen, so
    the result of one state (base and updates unchanged) is shared."""

    _state: tuple[TableMetadata, tuple[object, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        state = self._state
        if state is None or state[0] is not base or state[1] is not updates:
            state = self._state = (base, updates, super().table_metadata)
        return state[2]


class _LeanOverwrite(_OverwriteFiles):
    """pyiceberg's overwrite, without carrying forward the manifests whose every entry was
    deleted by an earlier snapshot (pyiceberg keeps them in each later manifest list, so a
    table merged into N times lists N dead manifests), and merging manifests as
    merge_append does (the table's `commit.manifest*` properties)."""

    @classmethod
    def of(
        cls, table: Table, tx: Transaction, ref: str, properties: dict[str, str]
    ) -> _LeanOverwrite:
        """What `tx.update_snapshot(...).overwrite()` would build, leaner."""
        head = tx.table_metadata.snapshot_by_name(ref)
        operation = Operation.OVERWRITE if head is not None else Operation.APPEND
        return cls(operation, tx, table.io, snapshot_properties=properties, branch=ref)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        properties = self._transaction.table_metadata.properties
        # as merge_append reads them: a head lists few manifests after merges too
        self._target_size_bytes = property_as_int(
            properties,
            TableProperties.MANIFEST_TARGET_SIZE_BYTES,
            TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT,
        )
        self._min_count_to_merge = property_as_int(
            properties,
            TableProperties.MANIFEST_MIN_MERGE_COUNT,
            TableProperties.MANIFEST_MIN_MERGE_COUNT_DEFAULT,
        )
        self._merge_enabled = property_as_bool(
            properties,
            TableProperties.MANIFEST_MERGE_ENABLED,
            TableProperties.MANIFEST_MERGE_ENABLED_DEFAULT,
        )

    _process_manifests = _MergeAppendFiles._process_manifests

    def _existing_manifests(self) -> list[ManifestFile]:
        return [
            m
            for m in super()._existing_manifests()
            if m.has_added_files() or m.has_existing_files()
        ]


def build_transaction(
    table: Table,
    *,
    ref: str,
    add_paths: Sequence[str],
    add_files: Sequence[DataFile] = (),
    drop_files: Sequence[DataFile] = (),
    properties: dict[str, str],
    remove_branch: str | None = None,
) -> Transaction:
    """A transaction making one snapshot on `ref`: drop `drop_files`, add the Parquet files
    at `add_paths` and the already described `add_files`; optionally remove a branch. A
    sync's commit on main (`properties` holding `rq.sync_id`) also sets its state as table
    properties (sink/state.py), in the same transaction."""
    tx = _Transaction(table)
    if tx.table_metadata.name_mapping() is None:
        mapping = tx.table_metadata.schema().name_mapping.model_dump_json()
        tx.set_properties({TableProperties.DEFAULT_NAME_MAPPING: mapping})
    if ref == st.MAIN and st.SYNC_ID in properties:
        state, stale = st.table_state_update(tx.table_metadata, properties)
        if stale:
            tx.remove_properties(*stale)
        tx.set_properties(state)
    metadata = tx.table_metadata
    with ThreadPoolExecutor(_THREADS) as pool:
        described = list(pool.map(lambda p: describe_file(table.io, metadata, p), add_paths))
    update = tx.update_snapshot(snapshot_properties=properties, branch=ref)
    # merge_append: with the table's manifest-merge properties (sink/maintenance.py), a
    # head lists a few manifests however many segments were appended
    producer = (
        _LeanOverwrite.of(table, tx, ref, properties) if drop_files else update.merge_append()
    )
    with producer:
        for data_file in drop_files:
            producer.delete_data_file(data_file)
        for data_file in [*described, *add_files]:
            producer.append_data_file(data_file)
    if remove_branch is not None:
        ManageSnapshots(tx).remove_branch(remove_branch).commit()
    return tx


def referenced_paths(table: Table) -> set[str]:
    """Filesystem paths of every data file a snapshot reachable from a ref points at."""
    metadata = table.metadata
    manifests: dict[str, ManifestFile] = {}
    for ref in metadata.refs.values():
        for snapshot in ancestors_of(metadata.snapshot_by_id(ref.snapshot_id), metadata):
            for manifest in snapshot.manifests(table.io):
                manifests.setdefault(manifest.manifest_path, manifest)
    paths: set[str] = set()
    for manifest in manifests.values():
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            paths.add(fs_path(table.io, entry.data_file.file_path))
    return paths
