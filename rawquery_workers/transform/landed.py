"""Records an append stream already landed at or after its cursor, recognised when the API
sends them again (the boundary record, the lookback window, a page that shifted).

A keyed stream absorbs such re-reads by merging; an append stream would land them twice.
So before a segment is written, the rows the table holds at or after `since` (landed by
earlier syncs) are read once, and an incoming row equal to one of them in every user
column is dropped. Only incoming rows whose cursor is not after the newest landed one can
match, so the comparison costs nothing for the new records of a sync.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from rawquery_workers.transform.batch import SYSTEM_PREFIX


def _print(row: dict[str, object]) -> frozenset[tuple[str, object]]:
    """A row's user values; a missing column and a null are the same."""
    return frozenset(
        (k, v) for k, v in row.items() if v is not None and not k.startswith(SYSTEM_PREFIX)
    )


class LandedRecords:
    def __init__(self, landed: pa.Table, cursor_column: str) -> None:
        self.cursor_column = cursor_column
        cursor = landed.column(cursor_column) if cursor_column in landed.column_names else None
        newest = pc.max(cursor) if cursor is not None and len(landed) else None
        self.newest: pa.Scalar | None = newest if newest is not None and newest.is_valid else None
        self._prints = {_print(r) for r in landed.to_pylist()} if self.newest is not None else set()

    def without_landed(self, data: pa.Table) -> pa.Table:
        """`data` less the rows already landed."""
        if self.newest is None or self.cursor_column not in data.column_names:
            return data
        cursor = data.column(self.cursor_column)
        try:
            early = pc.fill_null(pc.less_equal(cursor, self.newest.cast(cursor.type)), False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return data  # the cursor's type changed: nothing landed can be equal
        candidates = pc.indices_nonzero(early).to_pylist()
        if not candidates:
            return data
        rows = data.take(pa.array(candidates, pa.int64())).to_pylist()
        dropped = [
            i for i, row in zip(candidates, rows, strict=True) if _print(row) in self._prints
        ]
        if not dropped:
            return data
        keep = pc.invert(pc.is_in(pa.array(range(len(data)), pa.int64()), pa.array(dropped)))
        return data.filter(keep)
