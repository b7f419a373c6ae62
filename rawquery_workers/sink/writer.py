"""Parquet data files, written and read with pyarrow through the table's FileIO.

Every column of a file carries its Iceberg field id (`conform` keeps the ids
`schema.arrow_schema` puts in the table's Arrow schema; `rewrite_without` copies the
source file's schema), so engines that resolve columns by id read them; files written
before ids were written are resolved by the table's name mapping
(`schema.name-mapping.default`). A file never holds a retypable (all-null so far) column:
if that column is later deleted and re-added with another type under the same name, old
files read by name must not hold a string column of that name.

A sync's files live under `<table location>/data/rq-<sync_id>/`, named
`<segment>-<token>-<n>.parquet` (a fresh token per call, so a redelivered task never
overwrites a file an earlier attempt may have committed). `cleanup_orphans` lists that
folder to find what an abandoned sync left behind.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterable
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import (
    PyArrowFileIO,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.table.metadata import TableMetadata

from rawquery_workers.errors import SinkError
from rawquery_workers.sink.layout import file_partition
from rawquery_workers.sink.schema import TIMESTAMP
from rawquery_workers.transform.batch import SYNCED_AT

COMPRESSION = "zstd"
_SYNC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_sync_id(sync_id: str) -> str:
    if not _SYNC_ID.match(sync_id):
        raise SinkError(
            f"sync id {sync_id!r} is not usable in file names: use letters, digits, '.', '_', "
            "'-' (at most 128 characters)"
        )
    return sync_id


def sync_dir(location: str, sync_id: str) -> str:
    return f"{location.rstrip('/')}/data/rq-{check_sync_id(sync_id)}"


def file_stem(segment: int | str) -> str:
    return f"{segment}-{uuid.uuid4().hex[:12]}"


def conform(
    data: pa.Table,
    schema: pa.Schema,
    retypable: frozenset[str],
    synced_at: datetime,
    where: str,
) -> pa.Table:
    """`data` in the table's column order and types, with `_rq_synced_at`; columns the
    batch lacks, and retypable columns that are still all null, are left out of the file."""
    # Name sets, not lists: `Table.column_names` and `Schema.names` build a new list on
    # every access, and a membership test in one is linear, so a loop over 50,000 columns
    # testing them was quadratic (minutes).
    table_names = frozenset(schema.names)
    extra = [c for c in data.column_names if c not in table_names]
    if extra:
        raise SinkError(
            f"{where}: columns {', '.join(map(repr, extra))} are not in the table; "
            "the batch must go through prepare() before write_files()"
        )
    batch_names = frozenset(data.column_names)
    fields: list[pa.Field] = []
    arrays: list[pa.ChunkedArray | pa.Array] = []
    for f in schema:
        if f.name in batch_names:
            column = data.column(f.name)
            if f.name in retypable and column.null_count == len(column):
                continue
            if not f.nullable and column.null_count:
                raise SinkError(
                    f"{where}.{f.name}: {column.null_count} rows have no value in this required "
                    "(primary-key) column; the transform step should have refused them"
                )
            arrays.append(_cast(column, f.type, f"{where}.{f.name}"))
        elif f.name == SYNCED_AT:
            arrays.append(pa.repeat(pa.scalar(synced_at, TIMESTAMP), data.num_rows))
        else:
            continue
        fields.append(f)  # with its field id and nullability
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _cast(column: pa.ChunkedArray, target: pa.DataType, where: str) -> pa.ChunkedArray:
    if column.type == target:
        return column
    if column.null_count == len(column):
        return pa.nulls(len(column), target)
    try:
        # Timestamps may lose sub-microsecond digits; every other cast must be exact.
        return pc.cast(column, target, safe=not pa.types.is_timestamp(target))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        first = str(exc).splitlines()[0]
        raise SinkError(
            f"{where}: values of type {column.type} cannot be stored in a {target} column "
            f"({first}); the transform step should have coerced them"
        ) from None


def describe_file(io: FileIO, metadata: TableMetadata, path: str) -> DataFile:
    """The DataFile entry (statistics from its footer) of a Parquet file `conform` wrote.

    pyiceberg's `parquet_file_to_data_file`, without its schema check: that check finds
    each file column in the table's name mapping by a linear search, quadratic in the
    column count (docs/decisions/022). The check here is by name, through a dict: every
    column of the file is a table column (`conform` already cast each one to the table's
    type). A partitioned table's file holds one partition value: its record is read from
    the file's rows (sink/layout.py)."""
    input_file = io.new_input(path)
    with input_file.open() as stream:
        parquet = pq.ParquetFile(stream)
        parquet_metadata = parquet.metadata
        partition = file_partition(parquet, metadata, path)
    schema = metadata.schema()
    mapping = parquet_path_to_id_mapping(schema)
    unknown = [n for n in parquet_metadata.schema.names if n not in mapping]
    if unknown:
        raise SinkError(
            f"{path}: columns {', '.join(map(repr, unknown[:5]))} are not in the table's "
            "schema; the data file must be written after prepare() evolved the table"
        )
    statistics = data_file_statistics_from_parquet_metadata(
        parquet_metadata=parquet_metadata,
        stats_columns=compute_statistics_plan(schema, metadata.properties),
        parquet_column_mapping=mapping,
    )
    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=partition,
        file_size_in_bytes=len(input_file),
        sort_order_id=None,
        spec_id=metadata.default_spec_id,
        equality_ids=None,
        key_metadata=None,
        **statistics.to_serialized_dict(),
    )


def keep_last(data: pa.Table, key_column: str) -> pa.Table:
    """One row per non-null key: the last one (the newest version). Rows without a key stay."""
    if key_column not in data.column_names or data.num_rows < 2:
        return data
    keep = last_rows(data.column(key_column))
    return data if keep is None else data.filter(keep)


def last_rows(keys: pa.ChunkedArray) -> pa.Array | None:
    """A mask keeping the last row of each non-null key and every null one; None when every
    non-null key is already unique (nothing to drop)."""
    valid = len(keys) - keys.null_count
    if valid == 0 or pc.count_distinct(keys, mode="only_valid").as_py() == valid:
        return None
    index = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), len(keys))), 1)
    pairs = pa.table({"k": keys, "i": index})
    last = pairs.group_by("k", use_threads=False).aggregate([("i", "max")]).column("i_max")
    return pc.or_(pc.is_in(index, value_set=last), pc.is_null(keys))


def matching_rows(
    io: FileIO, path: str, tests: Iterable[tuple[str, pa.Array]]
) -> tuple[pa.ChunkedArray, int, int] | None:
    """The rows of file `path` whose value in a tested column is in that column's value
    set, read from the tested columns only: (mask, matches, rows), or None if none match."""
    with io.new_input(path).open() as stream:
        parquet = pq.ParquetFile(stream)
        names = parquet.schema_arrow.names
        present = [(c, v) for c, v in tests if c in names]
        if not present:
            return None
        columns = parquet.read(columns=[c for c, _ in present])
    mask = None
    for name, values in present:
        column = columns.column(name)
        hit = pc.is_in(column, value_set=_cast(pa.chunked_array([values]), column.type, name))
        mask = hit if mask is None else pc.or_(mask, hit)
    assert mask is not None
    mask = pc.fill_null(mask, False)
    matches = pc.sum(mask).as_py() or 0
    return (mask, matches, columns.num_rows) if matches else None


def rewrite_without(io: FileIO, path: str, drop: pa.ChunkedArray | pa.Array, dest: str) -> str:
    """Copy file `path` to `dest` without the rows `drop` marks (copy-on-write delete),
    a row group at a time, so memory holds one row group, not the file."""
    keep = pc.invert(drop)
    with io.new_input(path).open() as stream:
        source = pq.ParquetFile(stream)
        with (
            io.new_output(dest).create(overwrite=False) as out,
            pq.ParquetWriter(out, source.schema_arrow, compression=COMPRESSION) as parquet,
        ):
            start = 0
            for group in range(source.num_row_groups):
                data = source.read_row_group(group)
                parquet.write_table(data.filter(keep.slice(start, data.num_rows)))
                start += data.num_rows
    return dest


def _filesystem(io: FileIO, location: str) -> tuple[pafs.FileSystem, str]:
    if not isinstance(io, PyArrowFileIO):
        raise SinkError(f"{location}: the warehouse must be read through pyarrow (PyArrowFileIO)")
    scheme, netloc, path = io.parse_location(location, io.properties)
    return io.fs_by_scheme(scheme, netloc), path


def fs_path(io: FileIO, location: str) -> str:
    """`location` as the pyarrow filesystem sees it (no scheme), for comparing paths."""
    return _filesystem(io, location)[1]


def list_files(io: FileIO, directory: str) -> list[str]:
    """Filesystem paths (see `fs_path`) of every file under `directory`."""
    filesystem, path = _filesystem(io, directory)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    infos = filesystem.get_file_info(selector)
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def delete_paths(io: FileIO, directory: str, paths: Iterable[str]) -> None:
    """Delete filesystem `paths` (from `list_files(io, directory)`)."""
    filesystem, _ = _filesystem(io, directory)
    for path in paths:
        filesystem.delete_file(path)


def delete_tree(io: FileIO, directory: str) -> None:
    filesystem, path = _filesystem(io, directory)
    with contextlib.suppress(FileNotFoundError):
        filesystem.delete_dir(path)


def remove_empty_dir(io: FileIO, directory: str) -> None:
    filesystem, path = _filesystem(io, directory)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.Directory and not list_files(io, directory):
        filesystem.delete_dir(path)


def file_infos(io: FileIO, directory: str) -> list[pafs.FileInfo]:
    """Every file under `directory` with its size and modification time (`path` as
    `fs_path` gives it)."""
    filesystem, path = _filesystem(io, directory)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    return [i for i in filesystem.get_file_info(selector) if i.type == pafs.FileType.File]


def delete_path(io: FileIO, directory: str, path: str) -> bool:
    """Delete one filesystem `path` under `directory`; False when it was already gone."""
    filesystem, _ = _filesystem(io, directory)
    try:
        filesystem.delete_file(path)
    except FileNotFoundError:
        return False
    return True
