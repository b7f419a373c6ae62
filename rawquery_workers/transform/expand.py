"""`expand`: an array field's items become the rows of the child table STREAM_FIELD.

Each item is one child row; an item that is not an object becomes a row with one column,
`value`. A single object where an array is expected counts as a one-item array; a missing
or null field gives no children (the parent still owns zero children: see `parent_keys`).
The child's parent-key column holds the parent's key: the value itself for a one-column
key, a JSON array of the values for a several-column key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate, chain
from typing import TYPE_CHECKING

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from rawquery_workers.transform.batch import KEY
from rawquery_workers.transform.flatten import FlatColumn
from rawquery_workers.transform.parse import json_text

if TYPE_CHECKING:
    from rawquery_workers.transform.columnar import ArrowValues

VALUE_COLUMN = "value"


@dataclass(frozen=True, slots=True)
class ChildRows:
    rows: list[dict[str, object]]
    owner: pa.Array  # int64: the index of each row's parent among the kept parent rows


def split_expanded(
    columns: list[FlatColumn], fields: Mapping[str, object]
) -> tuple[list[FlatColumn], dict[str, list[object] | ArrowValues | None]]:
    """Take the expanded fields out of the parent's columns (None: absent from the batch)."""
    found: dict[str, list[object] | ArrowValues | None] = dict.fromkeys(fields)
    rest = []
    for column in columns:
        if column.name in found:
            found[column.name] = column.values
        else:
            rest.append(column)
    return rest, found


def child_rows(values: list[object] | None) -> ChildRows:
    """The items of every parent row, in order, with the index of their parent."""
    values = values or []
    if not frozenset(map(type, values)) <= {list, type(None)}:  # single objects, scalars
        values = [[v] if v is not None and type(v) is not list else v for v in values]
    arrays: list[list[object]] = [v or [] for v in values]  # type: ignore[misc]
    rows: list[object] = list(chain.from_iterable(arrays))
    if not frozenset(map(type, rows)) <= {dict}:
        rows = [r if type(r) is dict else {VALUE_COLUMN: r} for r in rows]
    offsets = pa.array([0, *accumulate(map(len, arrays))], pa.int64())
    owner = pc.list_parent_indices(pa.LargeListArray.from_arrays(offsets, pa.nulls(len(rows))))
    return ChildRows(rows, owner.cast(pa.int64()))  # type: ignore[arg-type]


def parent_key_values(key_arrays: list[pa.Array]) -> pa.Array:
    """The parent-key value of each parent row: the key itself when it is one column, else
    the JSON array of its values; null when a key value is missing."""
    if len(key_arrays) == 1:
        return key_arrays[0]
    return pa.array(_json_tuples(key_arrays), pa.string())


def key_text(key_arrays: list[pa.Array]) -> pa.Array:
    """The `_rq_key` column: a one-column key as text, else the JSON array of the values."""
    if len(key_arrays) == 1:
        return key_arrays[0].cast(pa.string())
    return pa.array(_json_tuples(key_arrays), pa.string())


def _json_tuples(key_arrays: list[pa.Array]) -> list[str | None]:
    columns = [a.to_pylist() for a in key_arrays]
    out: list[str | None] = []
    for values in zip(*columns, strict=True):
        if None in values:
            out.append(None)
            continue
        try:
            out.append(orjson.dumps(values).decode())
        except TypeError:
            out.append(json_text(list(values)))
    return out


def shared_keys(data: pa.Table, link: str) -> int:
    """How many child keys (`_rq_key`) of a batch appear under more than one parent (a
    child keyed without its parent: all but the last parent's row of each would be lost)."""
    if KEY not in data.column_names or not data.num_rows:
        return 0
    pairs = pa.table({"k": data.column(KEY), "p": data.column(link)})
    counted = pairs.drop_null().group_by("k").aggregate([("p", "count_distinct")])
    return int(pc.sum(pc.greater(counted.column("p_count_distinct"), 1)).as_py() or 0)
