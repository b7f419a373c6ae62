"""One table's Parquet data files for one segment, written a chunk at a time.

A segment is one commit; for its files to come out near the target size it must be able
to hold far more rows than memory should (docs/decisions/005), so
rows reach the files as they are shaped: each `write` becomes row groups of the open file,
which is closed when it reaches the target size (uncompressed Arrow bytes, like
as the target means) or when a chunk's columns no longer fit it (a column added or
retyped mid-segment opens a new file; a column a chunk lacks is written as nulls).
A partitioned table has one open file per partition value its rows hold (each file of such
a table holds one value: sink/layout.py), and a table with a sort order gets each chunk
sorted by it.

A segment keeps the last version of each record, as `writer.keep_last` does for one
table: a key seen again in a later chunk (an API whose pages shift while they are read) has
its earlier rows dropped when the files are closed, and so do a child table's rows whose
parent a later chunk sent again (its children are the newer version's, maybe fewer), by
rewriting only the files that hold such rows. Finding them exactly needs a hash of every
key of the segment, which grows with it (docs/decisions/022), so only each chunk's lowest
and highest key (and parent key) are kept: chunks whose ranges do not overlap (pages in key
order, the usual case) cannot share a key, and only the rows of overlapping chunks are read
back and compared.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.io import FileIO

from rawquery_workers.sink import layout, writer
from rawquery_workers.transform.batch import KEY, KnownSchema

Guard = Callable[[Callable[[], Any]], Any]
# Files open at once: one per partition value a segment writes to, each holding a write
# buffer of its current row group; past this many the least recently written is closed.
MAX_OPEN_FILES = 16


@dataclass(frozen=True, slots=True)
class _Part:
    """Rows `start`..`start + rows` of file `file`, from write number `chunk`; their
    non-null keys lie in `keys` and their parent keys in `parents` ((low, high), None when
    the part has none)."""

    file: int
    start: int
    rows: int
    chunk: int
    keys: tuple[Any, Any] | None
    parents: tuple[Any, Any] | None


@dataclass(slots=True)
class _OpenFile:
    """A Parquet file being written: number `index` of the segment's files."""

    index: int
    writer: pq.ParquetWriter
    out: Any
    schema: pa.Schema
    bytes: int = 0

    def close(self) -> None:
        self.writer.close()
        self.out.close()


@dataclass(frozen=True, slots=True)
class _Owners:
    """The parent keys a child table's write number `chunk` replaces the children of."""

    chunk: int
    keys: pa.Array
    bounds: tuple[Any, Any] | None


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
        parent_key: str | None = None,
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
        self._parent_column = parent_key
        # The open files by partition value (() for an unpartitioned table), least recently
        # written first: a partitioned table's file holds one value (sink/layout.py).
        self._open: dict[tuple[Any, ...], _OpenFile] = {}
        self.paths: list[str] = []
        self._rows: list[int] = []  # per file
        self._parts: list[_Part] = []
        self._owners: list[_Owners] = []
        self._writes = 0

    def write(self, data: pa.Table, known: KnownSchema, owners: pa.Array | None = None) -> None:
        """Add rows (one chunk of a table batch) conformed to the table `known` describes;
        for a child table, `owners` are the chunk's parent keys (`TableBatch.parent_keys`):
        their children in earlier chunks are replaced by these rows."""
        self._writes += 1
        if owners is not None and len(owners):
            self._owners.append(_Owners(self._writes, owners, _bounds(owners)))
        rows = writer.keep_last(data, KEY)
        rows = writer.conform(rows, known.schema, known.retypable, self._synced_at, self._where)
        if rows.num_rows:
            self._guard(lambda: self._write_parts(layout.split(rows, known.layout, self._where)))

    def owners(self) -> pa.Array | None:
        """Every parent key written with `owners`, in order (None: none were)."""
        if not self._owners:
            return None
        first = self._owners[0].keys.type
        return pa.concat_arrays([o.keys.cast(first) for o in self._owners])

    def close(self) -> list[str]:
        """Finish the files; drop rows a later chunk superseded. The paths of the files
        that hold rows, in order."""
        self._guard(self._finish_files)
        self._guard(self._drop_superseded)
        return [p for p, rows in zip(self.paths, self._rows, strict=True) if rows]

    def abort(self) -> None:
        """Close the open files after a failure; the files stay for `cleanup_orphans`."""
        files, self._open = list(self._open.values()), {}
        for file in files:
            # The failure being handled matters, not one in closing after it.
            with contextlib.suppress(Exception):
                file.close()

    # --- internals ----------------------------------------------------------------------

    def _write_parts(self, parts: list[tuple[tuple[Any, ...], pa.Table]]) -> None:
        for value, rows in parts:
            self._write(value, rows)

    def _write(self, value: tuple[Any, ...], rows: pa.Table) -> None:
        """Append `rows` (all of partition `value`) to that partition's open file."""
        file = self._open.pop(value, None)
        if file is not None:
            self._open[value] = file  # now the most recently written
            if not _fits(rows.schema, file.schema):
                self._finish(value)
                file = None
        per_row = max(1, rows.nbytes // rows.num_rows)
        start = 0
        while start < rows.num_rows:
            if file is None:
                file = self._start(value, rows.schema)
            room = max(1, (self._target - file.bytes) // per_row)
            part = _aligned(rows.slice(start, room), file.schema)
            file.writer.write_table(part)
            self._note(part, file.index)
            self._rows[file.index] += part.num_rows
            file.bytes += part.num_rows * per_row
            start += part.num_rows
            if file.bytes >= self._target:
                self._finish(value)
                file = None

    def _start(self, value: tuple[Any, ...], schema: pa.Schema) -> _OpenFile:
        if len(self._open) >= MAX_OPEN_FILES:  # many partitions: close the least recent
            self._finish(next(iter(self._open)))
        path = f"{self._directory}/{self._stem}-{len(self.paths)}.parquet"
        out = self._io.new_output(path).create(overwrite=False)
        try:
            parquet = pq.ParquetWriter(out, schema, compression=writer.COMPRESSION)
        except BaseException:
            out.close()
            raise
        file = self._open[value] = _OpenFile(len(self.paths), parquet, out, schema)
        self.paths.append(path)
        self._rows.append(0)
        return file

    def _finish(self, value: tuple[Any, ...]) -> None:
        file = self._open.pop(value, None)
        if file is not None:
            file.close()

    def _finish_files(self) -> None:
        while self._open:
            self._finish(next(iter(self._open)))

    def _note(self, part: pa.Table, file: int) -> None:
        keys = parents = None
        if KEY in part.column_names:
            column = self._range_column if self._range_column in part.column_names else KEY
            keys = _bounds(part.column(column))
        if self._parent_column is not None and self._parent_column in part.column_names:
            parents = _bounds(part.column(self._parent_column))
        if keys is not None or parents is not None:
            start = self._rows[file]
            self._parts.append(_Part(file, start, part.num_rows, self._writes, keys, parents))

    def _drop_superseded(self) -> None:
        """Rewrite the files holding rows a later chunk replaced (see the module doc)."""
        keeps: dict[int, pa.Array] = {}  # part index -> keep mask
        self._by_key(keeps)
        self._by_parent(keeps)
        pieces: dict[int, list[tuple[int, pa.Array]]] = {}
        for index, keep in keeps.items():
            part = self._parts[index]
            pieces.setdefault(part.file, []).append((part.start, keep))
        for n, file_pieces in pieces.items():
            mask = _file_mask(self._rows[n], file_pieces)
            if pc.all(mask).as_py():
                continue
            path = self.paths[n]
            kept = pc.sum(mask).as_py() or 0
            if kept:  # else every row was superseded (often, with one file per partition)
                dest = f"{self._directory}/{self._stem}-{n}-last.parquet"
                self.paths[n] = writer.rewrite_without(self._io, path, pc.invert(mask), dest)
            self._rows[n] = kept
            self._io.delete(path)

    def _by_key(self, keeps: dict[int, pa.Array]) -> None:
        """A key written again by a later chunk: the earlier rows go."""
        suspects = _overlapping(self._parts)
        if not suspects:
            return
        parts = [self._parts[i] for i in suspects]
        keys = self._column(parts, KEY)
        keep = writer.last_rows(pa.chunked_array([k.cast(pa.string()) for k in keys]))
        if keep is None:
            return
        offset = 0
        for index, part in zip(suspects, parts, strict=True):
            keeps[index] = keep.slice(offset, part.rows)
            offset += part.rows

    def _by_parent(self, keeps: dict[int, pa.Array]) -> None:
        """A parent a later chunk sent again: its children from earlier chunks go."""
        column = self._parent_column
        if column is None or len(self._owners) < 2:
            return
        for index, part in enumerate(self._parts):
            later = [o.keys for o in self._owners if o.chunk > part.chunk and _meet(o, part)]
            if not later:
                continue
            (values,) = self._column([part], column)
            owners = pa.concat_arrays([o.cast(later[0].type) for o in later])
            replaced = _is_in(values, owners)
            keep = pc.invert(pc.fill_null(replaced, False))
            earlier = keeps.get(index)
            keeps[index] = keep if earlier is None else pc.and_(earlier, keep)

    def _column(self, parts: list[_Part], column: str) -> list[pa.Array]:
        """`column` of each part, read back from its file (each file read once)."""
        read: dict[int, pa.Array] = {}
        for n in sorted({p.file for p in parts}):
            with self._io.new_input(self.paths[n]).open() as stream:
                table = pq.ParquetFile(stream).read(columns=[column])
            read[n] = table.column(column).combine_chunks()
        return [read[p.file].slice(p.start, p.rows) for p in parts]


def _bounds(values: pa.Array | pa.ChunkedArray) -> tuple[Any, Any] | None:
    """(lowest, highest) non-null value; None when every value is null."""
    bounds = pc.min_max(values)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return None if low is None else (low, high)


def _meet(owners: _Owners, part: _Part) -> bool:
    """Whether a part's parent keys may be among `owners` (their ranges overlap)."""
    if owners.bounds is None or part.parents is None:
        return part.parents is not None
    try:
        return bool(owners.bounds[0] <= part.parents[1] and part.parents[0] <= owners.bounds[1])
    except TypeError:  # values that do not compare: assume they may meet
        return True


def _is_in(values: pa.Array, owners: pa.Array) -> pa.Array:
    try:
        return pc.is_in(values, value_set=owners.cast(values.type))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # compare as text
        return pc.is_in(values.cast(pa.string()), value_set=owners.cast(pa.string()))


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


def _overlapping(parts: list[_Part]) -> list[int]:
    """The indexes (in write order) of the parts whose key range overlaps that of another
    chunk's part."""
    try:
        return _overlaps(parts)
    except TypeError:  # keys of types that do not compare: check them all
        return [i for i, p in enumerate(parts) if p.keys is not None]


def _overlaps(parts: list[_Part]) -> list[int]:
    ranged = sorted((i for i, p in enumerate(parts) if p.keys is not None),
                    key=lambda i: parts[i].keys[0])  # type: ignore[index]  # fmt: skip
    groups: list[list[int]] = []
    high: Any = None
    for i in ranged:
        low, top = parts[i].keys  # type: ignore[misc]
        if groups and low <= high:
            groups[-1].append(i)
            high = max(high, top)
        else:
            groups.append([i])
            high = top
    suspects = {i for g in groups if len({parts[i].chunk for i in g}) > 1 for i in g}
    return sorted(suspects)


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
