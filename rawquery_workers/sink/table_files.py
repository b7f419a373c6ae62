"""One table's Parquet data files for one segment, written a chunk at a time.

A segment is one commit; for its files to come out near the target size it must be able
to hold far more rows than memory should (bench/README.md: the files-per-table target), so
rows reach the files as they are shaped: each `write` becomes row groups of the open file,
which is closed when it reaches the target size (uncompressed Arrow bytes, like
as the target means) or when a chunk's columns no longer fit it (a column added or
retyped mid-segment opens a new file; a column a chunk lacks is written as nulls).

A segment keeps the last row per key, as `writer.keep_last` does for one table: a key seen
again in a later chunk (an API whose pages shift while they are read) has its earlier rows
dropped when the files are closed, by rewriting only the files that hold them. Finding
such keys exactly needs a hash of every key of the segment (about 100 bytes a string key
in Arrow: 200 MB for 2M keys), so only each chunk's lowest and highest key is kept: chunks
whose key ranges do not overlap (pages in key order, the usual case) cannot share a key,
and only the keys of overlapping chunks are read back and compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.io import FileIO

from rawquery_workers.sink import writer
from rawquery_workers.transform.batch import KEY, KnownSchema

Guard = Callable[[Callable[[], Any]], Any]


@dataclass(frozen=True, slots=True)
class _Part:
    """Rows `start`..`start + rows` of file `file`, from write number `chunk`, whose keys
    (non-null) lie between `low` and `high`."""

    file: int
    start: int
    rows: int
    chunk: int
    low: Any
    high: Any


class TableFiles:
    """`write` chunks (in table order, any number), then `close` for the file paths."""

    def __init__(
        self,
        io: FileIO,
        directory: str,
        stem: str,
        *,
        where: str,
        target_size: int,
        synced_at: datetime,
        guard: Guard,
        keys: tuple[str, ...] = (),
    ) -> None:
        self._io = io
        self._directory = directory
        self._stem = stem
        self._where = where
        self._target = max(1, target_size)
        self._synced_at = synced_at
        self._guard = guard
        # A one-column key compares in its own type (numbers as numbers); `_rq_key` holds
        # that value as text, whose order would make ranges like 1-9999 and 10000-19999
        # overlap.
        self._range_column = keys[0] if len(keys) == 1 else KEY
        self._writer: pq.ParquetWriter | None = None
        self._out: Any = None
        self._schema = pa.schema([])  # the open file's
        self._bytes = 0
        self.paths: list[str] = []
        self._rows: list[int] = []  # per file
        self._parts: list[_Part] = []
        self._writes = 0

    def write(self, data: pa.Table, known: KnownSchema) -> None:
        """Add rows (one chunk of a table batch) conformed to the table `known` describes."""
        rows = writer.keep_last(data, KEY)
        rows = writer.conform(rows, known.schema, known.retypable, self._synced_at, self._where)
        if rows.num_rows:
            self._writes += 1
            self._guard(lambda: self._write(rows))

    def close(self) -> list[str]:
        """Finish the files; drop rows a later chunk superseded. The paths, in order."""
        self._guard(self._finish_file)
        self._guard(self._drop_superseded)
        return list(self.paths)

    def abort(self) -> None:
        """Close the open file after a failure; the files stay for `cleanup_orphans`."""
        writer_, out = self._writer, self._out
        self._writer = self._out = None
        for closable in (writer_, out):
            try:
                if closable is not None:
                    closable.close()
            except Exception:  # noqa: BLE001 - the failure being handled matters, not this one
                pass

    # --- internals ----------------------------------------------------------------------

    def _write(self, rows: pa.Table) -> None:
        if self._writer is not None and not _fits(rows.schema, self._schema):
            self._finish_file()
        per_row = max(1, rows.nbytes // rows.num_rows)
        start = 0
        while start < rows.num_rows:
            if self._writer is None:
                self._open(rows.schema)
            assert self._writer is not None
            room = max(1, (self._target - self._bytes) // per_row)
            part = _aligned(rows.slice(start, room), self._schema)
            self._writer.write_table(part)
            self._note(part)
            self._rows[-1] += part.num_rows
            self._bytes += part.num_rows * per_row
            start += part.num_rows
            if self._bytes >= self._target:
                self._finish_file()

    def _open(self, schema: pa.Schema) -> None:
        path = f"{self._directory}/{self._stem}-{len(self.paths)}.parquet"
        self._out = self._io.new_output(path).create(overwrite=False)
        self._writer = pq.ParquetWriter(self._out, schema, compression=writer.COMPRESSION)
        self._schema = schema
        self.paths.append(path)
        self._rows.append(0)
        self._bytes = 0

    def _finish_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._out.close()
        self._writer = self._out = None

    def _note(self, part: pa.Table) -> None:
        if KEY not in part.column_names:
            return
        column = self._range_column if self._range_column in part.column_names else KEY
        bounds = pc.min_max(part.column(column))
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        file, start = len(self.paths) - 1, self._rows[-1]
        self._parts.append(_Part(file, start, part.num_rows, self._writes, low, high))

    def _drop_superseded(self) -> None:
        suspects = _overlapping(self._parts)
        if not suspects:
            return
        keys = {n: self._read_keys(n) for n in sorted({p.file for p in suspects})}
        keep = writer.last_rows(
            pa.chunked_array([keys[p.file].slice(p.start, p.rows) for p in suspects], pa.string())
        )
        if keep is None:
            return
        offset = 0
        kept: dict[int, list[tuple[int, pa.Array]]] = {n: [] for n in keys}
        for part in suspects:
            kept[part.file].append((part.start, keep.slice(offset, part.rows)))
            offset += part.rows
        for n, pieces in kept.items():
            mask = _file_mask(self._rows[n], pieces)
            if not pc.all(mask).as_py():
                path = self.paths[n]
                dest = f"{self._directory}/{self._stem}-{n}-last.parquet"
                self.paths[n] = writer.rewrite_without(self._io, path, pc.invert(mask), dest)
                self._io.delete(path)

    def _read_keys(self, file: int) -> pa.Array:
        with self._io.new_input(self.paths[file]).open() as stream:
            return pq.ParquetFile(stream).read(columns=[KEY]).column(KEY).combine_chunks()


def _file_mask(rows: int, pieces: list[tuple[int, pa.Array]]) -> pa.ChunkedArray:
    """A keep-mask over a file's rows: the given pieces (start, mask), true elsewhere."""
    chunks: list[pa.Array] = []
    at = 0
    for start, mask in sorted(pieces, key=lambda piece: piece[0]):
        if start > at:
            chunks.append(pa.repeat(pa.scalar(True), start - at))
        chunks.append(mask)
        at = start + len(mask)
    if at < rows:
        chunks.append(pa.repeat(pa.scalar(True), rows - at))
    return pa.chunked_array(chunks, pa.bool_())


def _overlapping(parts: list[_Part]) -> list[_Part]:
    """The parts (in write order) whose key range overlaps that of another chunk's part."""
    try:
        return _overlaps(parts)
    except TypeError:  # keys of types that do not compare: check them all
        return parts


def _overlaps(parts: list[_Part]) -> list[_Part]:
    ranged = sorted((p for p in parts if p.low is not None), key=lambda p: p.low)
    groups: list[list[_Part]] = []
    high: Any = None
    for part in ranged:
        if groups and part.low <= high:
            groups[-1].append(part)
            high = max(high, part.high)
        else:
            groups.append([part])
            high = part.high
    suspects = {id(p) for g in groups if len({p.chunk for p in g}) > 1 for p in g}
    return [p for p in parts if id(p) in suspects]


def _fits(schema: pa.Schema, file_schema: pa.Schema) -> bool:
    """Whether rows of `schema` can go into a file of `file_schema` (missing columns null)."""
    names = set(file_schema.names)
    return all(f.name in names and file_schema.field(f.name).type == f.type for f in schema)


def _aligned(rows: pa.Table, file_schema: pa.Schema) -> pa.Table:
    if rows.schema.names == file_schema.names:
        return rows
    arrays = [
        rows.column(f.name) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
        for f in file_schema
    ]
    return pa.Table.from_arrays(arrays, schema=file_schema)
