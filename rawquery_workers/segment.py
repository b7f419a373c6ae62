"""Shaping a segment into Arrow while its pages arrive, so memory holds one chunk of records.

A segment (up to `segment_records` records: one commit) used to be held as Python dicts
until all its pages were in (~4.5 KB a record: ~900 MB for 200k). `SegmentShaper` takes
the records a chunk at a time (`CHUNK_RECORDS`), shapes each chunk with `transform_records`
against the schemas the tables had when the segment started, keeps only the Arrow tables,
and at the end unites each table's chunks into one batch, so the sink still sees one batch
(one `prepare`, one set of files, one commit) per table per segment.

Uniting chunks follows the inference rule of one batch (transform/infer.py): a column that
is integer in one chunk and float in another becomes float; a column whose chunks disagree
otherwise becomes string (values as text); chunks where it held only nulls do not vote.
Differences from shaping the whole segment at once, all at chunk boundaries (the same as at
segment boundaries): a key repeated in two chunks keeps the later chunk's record (a write
keeps the last row per key), and counts in warnings are per chunk.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from rawquery_workers.spec.models import Stream
from rawquery_workers.transform import transform_records
from rawquery_workers.transform.batch import KnownSchema, TableBatch

CHUNK_RECORDS = 10_000
_GC_LOCK = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def relaxed_gc() -> Iterator[None]:
    """Fewer garbage collections while a segment is read.

    Parsed JSON is millions of small acyclic containers that live until their chunk is
    shaped; with the default thresholds the collector scans every one of them, young and
    then old, again and again (a third of the CPU of a 200k-record segment in the profile).
    A young generation of 100k containers lets most of a page's objects die before any scan
    (-1.5 s of 7.4 s at 200k records, peak RSS unchanged; disabling the collector saved
    about as much but grew RSS by 100 MB of uncollected cycles), and the oldest generation
    is collected rarely. Collections still run, so cyclic garbage is still freed.
    Thread-safe and nestable."""
    global _gc_users, _gc_saved
    with _GC_LOCK:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            young, middle, old = _gc_saved
            gc.set_threshold(max(young, 100_000), middle, max(old, 1000))
        _gc_users += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)


@dataclass(slots=True)
class SegmentShaper:
    """Feed records with `add`; `tables()` gives one batch per table (parent first)."""

    stream: Stream
    known: dict[str, KnownSchema]
    since: str | None
    max_cursor: str | None = None
    warnings: list[str] = field(default_factory=list)
    parts: dict[str, list[TableBatch]] = field(default_factory=dict)
    records: int = 0

    def add(self, records: list[dict]) -> None:
        from rawquery_workers.pipeline import _max

        result = transform_records(self.stream, records, self.known, since_cursor=self.since)
        self.records += len(records)
        self.max_cursor = _max(self.max_cursor, result.max_cursor)
        self.warnings += result.warnings
        for batch in result.tables:
            self.parts.setdefault(batch.name, []).append(batch)

    def tables(self) -> list[TableBatch]:
        if not self.parts:
            self.add([])
        return [unite(parts) for parts in self.parts.values()]


def unite(parts: list[TableBatch]) -> TableBatch:
    """One batch from a table's chunks (see the module docstring for the types)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    seen = list(dict.fromkeys(n for p in parts for n in p.data.column_names))
    system = [n for n in first.data.column_names if n.startswith("_rq_")]
    names = [n for n in seen if n not in system] + system  # system columns stay last
    retypable = frozenset.intersection(*(p.retypable | _absent(p, names) for p in parts))
    types = {n: _united_type([_voting_type(p, n) for p in parts]) for n in names}
    tables = [_aligned(p.data, names, types) for p in parts]
    data = pa.concat_tables(tables)  # chunked: no copy of the segment
    keys = [p.parent_keys for p in parts if p.parent_keys is not None]
    parent_keys = pa.concat_arrays([k.cast(keys[0].type) for k in keys]) if keys else None
    return TableBatch(
        first.name, data, first.keys, first.parent_key, first.parent, parent_keys, retypable
    )


def _absent(part: TableBatch, names: Iterable[str]) -> frozenset[str]:
    return frozenset(n for n in names if n not in part.data.column_names)


def _voting_type(part: TableBatch, name: str) -> pa.DataType | None:
    if name not in part.data.column_names:
        return None
    column = part.data.column(name)
    if name in part.retypable or column.null_count == len(column):
        return None
    return column.type


def _united_type(types: list[pa.DataType | None]) -> pa.DataType:
    voting = {t for t in types if t is not None}
    if not voting:
        return next((t for t in types if t is not None), pa.string())
    if len(voting) == 1:
        return voting.pop()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in voting):
        return pa.float64() if any(pa.types.is_floating(t) for t in voting) else pa.int64()
    return pa.string()


def _aligned(data: pa.Table, names: list[str], types: dict[str, pa.DataType]) -> pa.Table:
    arrays = []
    for name in names:
        target = types[name]
        if name not in data.column_names:
            arrays.append(pa.nulls(data.num_rows, target))
            continue
        column = data.column(name)
        if column.type == target:
            arrays.append(column)
        elif column.null_count == len(column):
            arrays.append(pa.nulls(data.num_rows, target))
        else:
            arrays.append(pc.cast(column, target))
    schema = pa.schema([pa.field(n, types[n], nullable=True) for n in names])
    return pa.Table.from_arrays(arrays, schema=schema)
