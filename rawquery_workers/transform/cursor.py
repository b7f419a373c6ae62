"""Which records of a batch are kept: the incremental cursor, then one row per primary key.

- Records whose cursor value is before the saved cursor are dropped; the comparison uses
  the cursor column's type (timestamps as instants, numbers as numbers, else strings).
  Records without a cursor value are kept.
- Of several records with the same primary key the newest is kept: the greatest cursor
  value (a missing one counts as oldest), ties going to the later record. Records with a
  missing key value are all kept.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from rawquery_workers.spec.models import ColumnType
from rawquery_workers.transform.coerce import coerce, read_values
from rawquery_workers.transform.parse import json_text


def at_or_after(
    cursor: pa.Array, column_type: ColumnType, since: str
) -> tuple[list[int] | None, str | None]:
    """Rows whose cursor is at or after `since` or missing (None: every row), and a warning
    when `since` cannot be read as the column's type."""
    read_as: ColumnType = "string" if column_type == "json" else column_type
    bound = coerce(read_values([since]), read_as)
    if bound.rejected or not bound.array[0].is_valid:
        return None, (
            f"saved cursor '{since}' cannot be read as {column_type}; no records were dropped by it"
        )
    keep = pc.fill_null(pc.greater_equal(cursor, bound.array[0]), True)
    if pc.all(keep).as_py():
        return None, None
    return pc.indices_nonzero(keep).to_pylist(), None


def latest_per_key(
    keys: list[pa.Array], cursor: pa.Array | None, rows: list[int] | None
) -> list[int] | None:
    """Of `rows` (None: all), the newest row of each key, in input order (None: all)."""
    if rows is not None:
        indices = pa.array(rows, pa.int64())
        keys = [k.take(indices) for k in keys]
        cursor = None if cursor is None else cursor.take(indices)
    count = len(keys[0])
    positions = list(range(count))
    if cursor is not None:
        # a missing cursor sorts first (oldest): order by (has cursor, cursor, position)
        order = pa.table({"v": pc.is_valid(cursor), "c": cursor, "i": pa.array(positions)})
        sort_keys = [("v", "ascending"), ("c", "ascending"), ("i", "ascending")]
        positions = pc.sort_indices(order, sort_keys=sort_keys).to_pylist()
    values = [k.to_pylist() for k in keys]
    key_of = values[0] if len(values) == 1 else list(zip(*values, strict=True))
    missing = _missing(keys)
    latest = dict(zip(map(key_of.__getitem__, positions), positions, strict=True))
    if missing:
        latest = {k: p for k, p in latest.items() if p not in missing}
    if len(latest) + len(missing) == count:
        return rows
    kept = sorted([*latest.values(), *missing])
    return kept if rows is None else [rows[p] for p in kept]


def _missing(keys: list[pa.Array]) -> set[int]:
    if not any(k.null_count for k in keys):
        return set()
    null = pc.is_null(keys[0])
    for k in keys[1:]:
        null = pc.or_(null, pc.is_null(k))
    return set(pc.indices_nonzero(null).to_pylist())


def render(value: object) -> str:
    """A cursor value as the string saved for the next sync (ISO 8601 for timestamps)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    return json_text(value)


def greatest(cursor: pa.Array) -> str | None:
    if cursor.null_count == len(cursor):
        return None
    return render(pc.max(cursor).as_py())


def later_cursor(a: str | None, b: str | None) -> str | None:
    """The later of two cursors as transform renders them: numbers compare as numbers,
    timestamps (ISO 8601, UTC) and other strings as strings."""
    if not a or not b:
        return a or b
    when_a, when_b = instant_of(a), instant_of(b)
    if when_a is not None and when_b is not None:
        return a if when_a >= when_b else b
    try:
        return a if float(a) >= float(b) else b
    except ValueError:
        return max(a, b)


# --- the saved cursor of a timestamp cursor (INTERFACE.md, "under change and faults") --------


def instant_of(text: str) -> datetime | None:
    """A cursor written as an ISO 8601 date or timestamp, as a UTC instant (naive: UTC);
    None for other cursors (ids, versions, epoch numbers)."""
    if len(text) < 10 or not text[:4].isdigit() or text[4] != "-":
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def written_like(when: datetime, sample: str) -> str:
    """`when` (floored to the second) in the style of the cursor text `sample`: a date, or
    a timestamp with the same separator and zone notation, so that string columns compare."""
    when = when.astimezone(UTC).replace(microsecond=0)
    if len(sample) == 10:
        return when.date().isoformat()
    text = when.isoformat(sep=sample[10])
    parsed = datetime.fromisoformat(sample.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        return text.removesuffix("+00:00")
    return text.replace("+00:00", "Z") if sample[-1] in "Zz" else text


def bounded(cursor: str | None, bound: datetime) -> str | None:
    """The cursor to save: a timestamp cursor is never later than `bound` (the sync's start
    minus the lookback), so records changed while the sync ran are read again next time."""
    when = instant_of(cursor) if cursor else None
    if cursor is None or when is None or when <= bound:
        return cursor
    return written_like(bound, cursor)


def looked_back(cursor: str | None, seconds: float | None) -> str | None:
    """The cursor a sync filters with: `seconds` before the saved timestamp cursor."""
    when = instant_of(cursor) if cursor and seconds else None
    if cursor is None or when is None or seconds is None:
        return cursor
    return written_like(when - timedelta(seconds=seconds), cursor)
