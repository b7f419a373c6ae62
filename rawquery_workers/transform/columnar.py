"""Records read by Arrow straight from the page bodies: the columns `flatten_rows` makes,
without a Python object per value.

A chunk's page bodies are parsed by Arrow's JSON reader (C++, free of the GIL, so it runs on
the second core while the next pages are fetched) into one struct array of records. Its
fields become FlatColumns whose values are `ArrowValues`: the Arrow array, and a way to get
the same values as the JSON parser made them. Where the Arrow reading is not the JSON
parser's (a string Arrow took for a timestamp, a number Arrow made a float, objects and
arrays whose JSON text is wanted, values to keep as rejected) the transform asks for the
parsed values, so both paths give the same tables. What Arrow refuses (a field that changes
type between records, duplicate keys, a lone surrogate) or would read inexactly (integers of
19+ digits) sends the whole chunk down the Python path (`read_pages` returns None).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from rawquery_workers.spec.jsonpath import split_path
from rawquery_workers.transform.flatten import FlatColumn, FlattenRules, resolve_names

Loader = Callable[[], list[object]]
_WRAP = "p"  # each body is read as {"p": body}, so an array body is a field like any other
_OPEN = b'{"' + _WRAP.encode() + b'":'
_LONG_INTEGER = r"\d{19}"  # orjson would have been bypassed for exactness (http.parse_json)


class Lazy:
    """A list computed on first use, then kept."""

    __slots__ = ("_load", "_value")

    def __init__(self, load: Loader) -> None:
        self._load: Loader | None = load
        self._value: list[object] | None = None

    def __call__(self) -> list[object]:
        if self._value is None:
            assert self._load is not None
            self._value, self._load = self._load(), None
        return self._value


@dataclass(frozen=True, slots=True)
class ArrowValues:
    """One column's values as Arrow read them; `python()` the same values as the JSON parser
    made them (from the parsed records, computed on first use)."""

    array: pa.Array
    python: Loader

    def __len__(self) -> int:
        return len(self.array)

    def take(self, rows: list[int]) -> ArrowValues | list[object]:
        """The values of `rows`. Floats and lists of objects become the parsed values: the
        kinds of the kept values decide a column's type (an Arrow float column may hold
        integers, `3`, that alone would be integers) and the kept items alone the columns
        of a child table; Arrow's types are those of all the chunk's records."""
        every = self.python
        kind = self.array.type
        if pa.types.is_floating(kind) or (
            pa.types.is_list(kind) and pa.types.is_struct(kind.value_type)
        ):
            return list(map(every().__getitem__, rows))
        return ArrowValues(
            self.array.take(pa.array(rows, pa.int64())),
            Lazy(lambda: list(map(every().__getitem__, rows))),
        )


@dataclass(frozen=True, slots=True)
class PageBodies:
    """The raw bodies of a chunk's pages, how many records each one gave, and where the
    records sit in each body (the stream's data_path; None: the body is the array)."""

    bodies: list[bytes]
    counts: list[int]
    data_path: str | None = None


def read_pages(pages: PageBodies) -> pa.StructArray | None:
    """The records of every page, as one struct array in record order; None when Arrow
    cannot read them exactly as the JSON parser did."""
    if not pages.bodies or not any(pages.counts):
        return None
    # one copy of the bodies, read by Arrow in place: copying and freeing megabytes holds
    # the GIL the fetch loop needs
    data = pa.py_buffer(b"".join(chain.from_iterable((_OPEN, b, b"}\n") for b in pages.bodies)))
    size = pa.array([0, data.size], pa.int64()).buffers()[1]
    whole = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1, [None, size, data])
    if pc.any(pc.match_substring_regex(whole, _LONG_INTEGER)).as_py():
        return None
    multiline = any(b"\n" in body or b"\r" in body for body in pages.bodies)
    try:
        table = pa_json.read_json(
            pa.BufferReader(data),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=data.size + 1),
            parse_options=pa_json.ParseOptions(newlines_in_values=multiline),
        )
        # pyarrow 26's reader builds invalid lists when null comes before a list's first
        # typed item ([null, 1]); the full check costs ~0.5 ms for 10k records
        table.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    column: pa.Array = table.column(_WRAP).combine_chunks()
    for segment in split_path(pages.data_path or ""):
        if not pa.types.is_struct(column.type) or column.type.get_field_index(segment) < 0:
            return None  # a list index in the path, or a key only some pages have
        column = column.flatten()[column.type.get_field_index(segment)]
    if not pa.types.is_list(column.type) or not pa.types.is_struct(column.type.value_type):
        return None
    if pc.list_value_length(column).fill_null(0).to_pylist() != pages.counts:
        return None
    records = column.flatten()
    return None if records.null_count else records


def flatten_struct(
    records: pa.StructArray,
    python: Loader,
    rules: FlattenRules,
    reserved: Iterable[str] = (),
) -> tuple[list[FlatColumn], list[str]]:
    """`flatten_rows` for records Arrow read; `python()` gives the same records parsed."""
    columns: list[FlatColumn] = []
    _walk(records, python, (), "", "json", rules, columns)
    return resolve_names(columns, reserved)


def _walk(
    struct: pa.StructArray,
    python: Loader,
    path: tuple[str, ...],
    prefix: str,
    inherited: str,
    rules: FlattenRules,
    out: list[FlatColumn],
) -> None:
    """flatten._walk over a struct array: a field holding objects is flattened unless its
    mode is json; the others are columns."""
    for field, child in zip(struct.type, struct.flatten(), strict=True):
        key = field.name
        sub, name = (*path, key), prefix + key
        mode = rules.mode(sub, inherited)  # type: ignore[arg-type]
        values = ArrowValues(child, _member(python, key))
        if mode == "json" or not pa.types.is_struct(child.type) or child.null_count == len(child):
            out.append(FlatColumn(sub, name, values))
        elif mode == "prefix":
            _walk(child, values.python, sub, name + "_", "prefix", rules, out)
        else:
            _walk(child, values.python, sub, prefix, "json", rules, out)


def _member(rows: Loader, key: str) -> Lazy:
    return Lazy(lambda: [r.get(key) if type(r) is dict else None for r in rows()])


def child_items(values: ArrowValues) -> tuple[pa.StructArray, pa.Array, Loader] | None:
    """An expanded field's items as Arrow read them, each item's parent row (int64) and the
    items as parsed; None when the items are not all objects (the Python path handles
    single objects, scalars and nulls as items)."""
    array = values.array
    if not pa.types.is_list(array.type) or not pa.types.is_struct(array.type.value_type):
        return None
    items = array.flatten()
    if items.null_count:
        return None
    owner = pc.list_parent_indices(array).cast(pa.int64())
    parents = values.python
    return items, owner, Lazy(lambda: [item for v in parents() for item in (v or ())])  # type: ignore[attr-defined]  # each parent value is a list of items
