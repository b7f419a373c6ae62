"""Writing a segment's tables while its pages arrive, so memory holds one chunk of records.

A segment (up to `segment_records` records: one commit) is read a chunk at a time
(`CHUNK_RECORDS`). Each chunk is shaped with `transform_records` against the tables' current
schemas; a chunk that brings new columns (or real values for an all-null column) evolves
its table first, so the next chunk is shaped against the evolved schema: chunk boundaries
behave as segment boundaries always have. Its rows then go to the table's open Parquet
files (sink/table_files.py). So a segment can be as large as the files should be, at the
memory of one chunk.

Shaping and writing run in a background thread while the caller fetches the next chunk:
Arrow parses the chunk's page bodies there (transform/columnar.py, C++ free of the GIL),
the chunk is shaped, and its records are freed; the caller's next `add` (or `finish`)
creates or evolves the chunk's tables (catalog work stays on the caller's thread) and the
thread writes them (Parquet encoding, also free of the GIL) before shaping the chunk after.

A key repeated in two chunks keeps the later chunk's row (as a write keeps the last row per
key), and a parent sent again by a later chunk keeps only that chunk's children (as a
commit replaces a parent's children); counts in warnings are per chunk.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import gc
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

import pyarrow as pa

from rawquery_workers.sink import IcebergSink
from rawquery_workers.sink.schema import unchanged_by
from rawquery_workers.sink.table_files import TableFiles
from rawquery_workers.spec.models import Stream
from rawquery_workers.transform import transform_records
from rawquery_workers.transform.batch import KnownSchema, TableBatch, TransformResult
from rawquery_workers.transform.columnar import PageBodies, read_pages
from rawquery_workers.transform.cursor import later_cursor
from rawquery_workers.transform.landed import LandedRecords
from rawquery_workers.transform.pipeline import Records

CHUNK_RECORDS = 10_000
CHUNK_SECONDS = 0.2  # a slow API's chunk: what it sent in this long (runner/pipeline.py)
MIN_CHUNK_RECORDS = 1_000  # ... but no fewer records (each chunk is a Parquet row group)
_GC_LOCK = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
_mmap_fixed = False


@contextlib.contextmanager
def relaxed_gc() -> Iterator[None]:
    """Fewer garbage collections while a segment is read: the young generation's threshold
    is raised to 100k objects, the older ones are kept.

    Parsed JSON is millions of small acyclic containers that live until their chunk is
    shaped; a large young generation lets most of a page's objects die before any scan
    (measurements and the alternatives tried: docs/decisions/005). Thread-safe and
    nestable."""
    global _gc_users, _gc_saved
    with _GC_LOCK:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            young, middle, old = _gc_saved
            gc.set_threshold(max(young, 100_000), middle, old)
        _gc_users += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)


def fixed_mmap_threshold() -> None:
    """Keep glibc's mmap threshold at its 128 KiB default for this process.

    glibc raises the threshold to the size of every large block freed, after which the
    blocks a chunk joins for Arrow fragment the heap; a fixed threshold keeps them in their
    own mappings, returned when freed (docs/decisions/005). A value the user set
    (MALLOC_MMAP_THRESHOLD_) wins; elsewhere than glibc this does nothing."""
    global _mmap_fixed
    if _mmap_fixed or "MALLOC_MMAP_THRESHOLD_" in os.environ or sys.platform != "linux":
        return
    _mmap_fixed = True
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


@dataclass(slots=True)
class WrittenTable:
    """A table's part of a segment: its files and, for a child table, the parent keys of
    every parent row of the segment (to replace their old children)."""

    name: str
    files: list[str]
    rows: int
    keys: tuple[str, ...]
    parent_key: str | None
    parent: str | None
    parent_keys: pa.Array | None


@dataclass(slots=True)
class _Table:
    files: TableFiles
    batch: TableBatch  # the first chunk's: name, keys and parent links
    rows: int = 0


class SegmentWriter:
    """`add` records a chunk at a time, then `finish` for the tables (parent first).
    A context manager: leaving it on an error closes every open file (the files stay
    for `cleanup_orphans`)."""

    def __init__(
        self,
        stream: Stream,
        sink: IcebergSink,
        connection: str,
        *,
        since: str | None,
        max_cursor: str | None,
        sync_id: str,
        segment: int,
        synced_at: datetime,
        landed: LandedRecords | None = None,
    ) -> None:
        self.stream = stream
        self.landed = landed  # an append stream's rows at or after `since`: not landed again
        self.sink = sink
        self.connection = connection
        self.since = since
        self.max_cursor = max_cursor
        self.records = 0
        self.warnings: list[str] = []
        self.schema_changes: list[str] = []
        self.sync_id, self.segment, self.synced_at = sync_id, segment, synced_at
        names = [stream.name, *map(stream.child_table, stream.expand)]
        self._known = {n: k for n in names if (k := sink.known_schema(connection, n))}
        self._tables: dict[str, _Table] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rq-write")
        fixed_mmap_threshold()
        self._writing: Future[TransformResult | None] | None = None

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is not None:
            with contextlib.suppress(Exception):
                self._shaped()
            for table in self._tables.values():
                table.files.abort()
        self._pool.shutdown(wait=True)

    def add(self, records: Records, pages: PageBodies | None = None) -> None:
        """Shape and write a chunk: its records, or a function parsing them (called only
        when Arrow cannot read `pages`, the bodies they come from). Takes a list of records
        over: it is emptied later.

        The chunk is shaped in the writer thread (where Arrow parses `pages` off the GIL)
        while the caller fetches the next one; its tables are prepared here, on the next
        call, and written in the thread along with shaping the chunk after it."""
        self.records += len(records) if isinstance(records, list) else sum(pages.counts)  # type: ignore[union-attr]
        writes = self._place(self._shaped())
        known = dict(self._known)
        self._writing = self._pool.submit(
            _write_then_shape, writes, lambda: self._shape(records, pages, known)
        )

    def finish(self) -> list[WrittenTable]:
        writes = self._place(self._shaped())
        if not self._tables:  # no records: the tables are still created
            writes += self._place(self._shape([], None, self._known))
        _write_then_shape(writes, None)
        return [
            WrittenTable(
                name=name,
                files=table.files.close(),
                rows=table.rows,
                keys=table.batch.keys,
                parent_key=table.batch.parent_key,
                parent=table.batch.parent,
                parent_keys=table.files.owners(),
            )
            for name, table in self._tables.items()
        ]

    def _shape(
        self, records: Records, pages: PageBodies | None, known: dict[str, KnownSchema]
    ) -> TransformResult:
        parsed = read_pages(pages) if pages is not None else None
        result = None
        if parsed is not None:
            # A reading of Arrow's that the Python path's conversions refuse (none is known:
            # tests/test_transform_columnar.py) costs speed, never the sync.
            with contextlib.suppress(pa.ArrowException):
                result = transform_records(self.stream, records, known, self.since, parsed)
        if result is None:
            records = records() if callable(records) else records
            result = transform_records(self.stream, records, known, self.since)
        if isinstance(records, list):
            # Freeing a chunk's millions of small objects is not free: here, as soon as they
            # are shaped, it overlaps the fetch loop's socket waits (docs/decisions/005).
            records.clear()
        return result

    def _place(self, result: TransformResult | None) -> list[Callable[[], None]]:
        """Prepare the tables of a shaped chunk; the calls writing it."""
        if result is None:
            return []
        self.max_cursor = later_cursor(self.max_cursor, result.max_cursor)
        renames = set(result.renames)  # reported as schema changes, once per segment
        self.warnings += [w for w in result.warnings if w not in renames]
        writes: list[Callable[[], None]] = []
        for batch in result.tables:
            if self.landed is not None and batch.parent is None:
                batch = dataclasses.replace(batch, data=self.landed.without_landed(batch.data))
            known = self._prepare(batch)
            table = self._table(batch)
            table.rows += batch.data.num_rows
            writes.append(
                functools.partial(table.files.write, batch.data, known, batch.parent_keys)
            )
        self.schema_changes += [r for r in result.renames if r not in self.schema_changes]
        return writes

    def _prepare(self, batch: TableBatch) -> KnownSchema:
        """Create or evolve the batch's table when its schema asks for it; its schema."""
        known = self._known.get(batch.name)
        if known is None or not unchanged_by(known, batch, f"{self.connection}.{batch.name}"):
            lines = self.sink.prepare(self.connection, batch)
            self.schema_changes += [f"{batch.name}: {line}" for line in lines]
            known = self.sink.known_schema(self.connection, batch.name)
            assert known is not None, "prepare() creates the table"
            self._known[batch.name] = known
        return known

    def _table(self, batch: TableBatch) -> _Table:
        table = self._tables.get(batch.name)
        if table is None:
            files = self.sink.open_files(
                self.connection,
                batch.name,
                sync_id=self.sync_id,
                segment=self.segment,
                synced_at=self.synced_at,
                keys=batch.keys,
                parent_key=batch.parent_key,
            )
            table = self._tables[batch.name] = _Table(files, batch)
        return table

    def _shaped(self) -> TransformResult | None:
        """Wait for the writer thread; the chunk it shaped, if any."""
        writing, self._writing = self._writing, None
        return writing.result() if writing is not None else None


def _write_then_shape(
    writes: list[Callable[[], None]], shape: Callable[[], TransformResult] | None
) -> TransformResult | None:
    for call in writes:
        call()
    return shape() if shape is not None else None
