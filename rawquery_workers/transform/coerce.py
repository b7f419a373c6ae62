"""Turn one column of JSON values into an Arrow array of a column type.

A column is first read by pyarrow as a whole (`read_values`): when its values share one
plain JSON type this gives an Arrow array and the kinds of values in one pass. Coercion then
casts that array with pyarrow.compute; for strings, a vectorised pattern check picks the
values Arrow can cast, and only the others go through the per-value Python parser, which
puts null in place of a value it cannot read and keeps the original in `rejected`.
Accepted forms are listed in docs/transform.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from rawquery_workers.spec.models import ColumnType
from rawquery_workers.transform.columnar import ArrowValues
from rawquery_workers.transform.parse import (
    EPOCH_MS_ABOVE,
    FALSE_TEXT,
    MAX_MICROS,
    MIN_MICROS,
    PARSERS,
    TRUE_TEXT,
    clean_text,
)

NoneType = type(None)
Kinds = frozenset[type]
Cast = Callable[[pa.Array], pa.Array]

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "json": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}
_KINDS_OF_ARROW = {
    pa.null(): frozenset(),
    pa.bool_(): frozenset({bool}),
    pa.int64(): frozenset({int}),
    pa.float64(): frozenset({float}),
    pa.string(): frozenset({str}),
}
_UTC = ARROW_TYPES["timestamp"]
_EXACT = float(2**53)  # doubles below this hold every integer exactly
_TIME = r"[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
_ZONED = rf"^\d{{4}}-\d{{2}}-\d{{2}}{_TIME}(Z|[+-]\d{{2}}:?\d{{2}})$"
_NAIVE = rf"^\d{{4}}-\d{{2}}-\d{{2}}({_TIME})?$"
_DATE = rf"^\d{{4}}-\d{{2}}-\d{{2}}({_TIME}(Z|[+-]\d{{2}}:?\d{{2}})?)?$"
_INT = r"^-?\d{1,18}$"
_FLOAT = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


class Values:
    """One column's raw values, their kinds (Python types, nulls left out) and, when
    pyarrow could read them as one plain type, the same values as an Arrow array. `raw` may
    be given as a function: values Arrow read from the page bodies are made Python objects
    only when a conversion needs them."""

    __slots__ = ("_raw", "arrow", "count", "kinds")

    def __init__(
        self,
        raw: list[object] | Callable[[], list[object]],
        kinds: Kinds,
        arrow: pa.Array | None = None,
        count: int | None = None,
    ) -> None:
        self._raw = raw
        self.kinds = kinds
        self.arrow = arrow
        self.count = len(raw) if isinstance(raw, list) else count or 0

    @property
    def raw(self) -> list[object]:
        if not isinstance(self._raw, list):
            self._raw = self._raw()
        return self._raw


@dataclass(frozen=True, slots=True)
class Coerced:
    array: pa.Array
    rejected: dict[int, object] = field(default_factory=dict)


def kinds_of(values: list[object]) -> Kinds:
    """The Python types of the non-null values."""
    return frozenset(map(type, values)) - {NoneType}


def read_values(raw: list[object] | ArrowValues) -> Values:
    if isinstance(raw, ArrowValues):
        return _read_arrow(raw)
    first = next((v for v in raw if v is not None), None)
    if type(first) in (bool, int, float, str):
        try:
            arrow = pa.array(raw)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
            arrow = None
        if arrow is not None and arrow.type in _KINDS_OF_ARROW:
            return Values(raw, _KINDS_OF_ARROW[arrow.type], arrow)
    return Values(raw, kinds_of(raw))


def _read_arrow(values: ArrowValues) -> Values:
    """Values Arrow read from the page bodies. Its plain types are what `read_values` makes
    of the same values; timestamps (strings Arrow recognised) are read from the parsed
    values, as the Python path does."""
    array, count = values.array, len(values.array)
    if array.null_count == count:
        return Values(values.python, frozenset(), None, count)
    kinds = _KINDS_OF_ARROW.get(array.type)
    if array.type == pa.float64() and not pc.all(pc.less(pc.abs(array), _EXACT)).as_py():
        # an integer beyond 2**53 among floats, which Arrow rounded: `pa.array` refuses
        # such a mix, so the parsed values are read one by one, exactly
        return read_values(values.python())
    if kinds is not None:
        return Values(values.python, kinds, array, count)
    if pa.types.is_list(array.type):
        return Values(values.python, frozenset({list}), array, count)
    if pa.types.is_struct(array.type):
        return Values(values.python, frozenset({dict}), None, count)
    if pa.types.is_timestamp(array.type):
        return Values(values.python, frozenset({str}), array, count)
    return read_values(values.python())


def coerce(values: Values, target: ColumnType) -> Coerced:
    """The values as an Arrow array of `target`, with what could not be read."""
    arrow_type = ARROW_TYPES[target]
    if not values.kinds:
        return Coerced(pa.nulls(values.count, arrow_type))
    if values.arrow is not None:
        if values.arrow.type == arrow_type and target != "json":
            return Coerced(values.arrow)
        done = _from_arrow(values, target)
        if done is not None:
            return done
    elif target == "json" or (target == "string" and values.kinds <= {dict, list}):
        encoded = _json_texts(values.raw)
        if encoded is not None:
            return Coerced(encoded)
    return _per_value(values.raw, list(range(len(values.raw))), target)


def _json_texts(raw: list[object]) -> pa.Array | None:
    """Every value as JSON text in one pass; None when orjson refuses one (a huge int)."""
    try:
        encoded = [None if v is None else orjson.dumps(v).decode() for v in raw]
    except TypeError:
        return None
    return pa.array(encoded, pa.string())


def _per_value(raw: list[object], rows: list[int], target: ColumnType) -> Coerced:
    """`raw[i]` for i in `rows` parsed one by one; the array has one item per row."""
    parse = PARSERS[target]
    out: list[object] = []
    rejected: dict[int, object] = {}
    for i in rows:
        value = raw[i]
        if value is None:
            out.append(None)
            continue
        try:
            out.append(parse(value))
        except (ValueError, TypeError, OverflowError, ArithmeticError):
            out.append(None)
            rejected[i] = value
    try:
        return Coerced(pa.array(out, ARROW_TYPES[target]), rejected)
    except UnicodeEncodeError:
        out = [clean_text(v) if type(v) is str else v for v in out]
        return Coerced(pa.array(out, ARROW_TYPES[target]), rejected)


def _from_arrow(values: Values, target: ColumnType) -> Coerced | None:
    """Vectorised conversions; None when the per-value parser has to do it all."""
    arrow = values.arrow
    assert arrow is not None
    source = arrow.type
    if pa.types.is_timestamp(source):  # strings Arrow read with its ISO-8601 parser
        if target == "timestamp":
            return Coerced(pc.cast(arrow, _UTC))
        return coerce(read_values(values.raw), target)  # the text as written
    if pa.types.is_list(source):
        texts = _list_json(arrow) if target in ("json", "string") else None
        return Coerced(texts) if texts is not None else None
    try:
        if pa.types.is_string(source):
            return _from_strings(values, arrow, target)
        if target in ("string", "json"):
            # JSON text of ints and booleans is Arrow's; floats are written by orjson
            return None if source == pa.float64() else Coerced(pc.cast(arrow, pa.string()))
        if source == pa.bool_():
            return None  # a boolean is no number, timestamp or date: rejected one by one
        if target in ("integer", "float"):
            return Coerced(pc.cast(arrow, ARROW_TYPES[target]))  # fails on 2.5 -> integer
        if target == "boolean":
            return Coerced(pc.equal(arrow, 1)) if _only_zero_one(arrow) else None
        micros = _epoch_micros(arrow)
        if micros is None:
            return None
        return Coerced(pc.cast(micros.cast(_UTC), ARROW_TYPES[target]))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None


def _from_strings(values: Values, strings: pa.Array, target: ColumnType) -> Coerced | None:
    if target == "integer":
        return _by_pattern(values, strings, target, [(_INT, _cast(pa.int64()))])
    if target == "float":
        return _by_pattern(values, strings, target, [(_FLOAT, _cast(pa.float64()))])
    if target == "timestamp":
        naive = _cast(pa.timestamp("us"))
        return _by_pattern(
            values,
            strings,
            target,
            [(_ZONED, _cast(_UTC)), (_NAIVE, lambda s: naive(s).cast(_UTC))],
        )
    if target == "date":
        return _by_pattern(values, strings, target, [(_DATE, _date_part)])
    if target == "boolean":
        return _booleans(values, strings)
    return None  # json: every string is encoded, one by one


def _by_pattern(
    values: Values, strings: pa.Array, target: ColumnType, casts: list[tuple[str, Cast]]
) -> Coerced:
    """Arrow casts the strings matching a pattern; the parser reads the others."""
    nothing = pa.scalar(None, pa.string())
    masks = [pc.fill_null(pc.match_substring_regex(strings, p), False) for p, _ in casts]
    parts = [
        cast(pc.if_else(m, strings, nothing)) for m, (_, cast) in zip(masks, casts, strict=True)
    ]
    fast = parts[0] if len(parts) == 1 else pc.coalesce(*parts)
    matched = masks[0] if len(masks) == 1 else _any(masks)
    return _merge(values, fast, pc.or_(matched, pc.is_null(strings)), target)


def _booleans(values: Values, strings: pa.Array) -> Coerced:
    text = pc.utf8_lower(pc.utf8_trim_whitespace(strings))
    is_true = pc.is_in(text, pa.array(sorted(TRUE_TEXT)))
    known = pc.or_(is_true, pc.is_in(text, pa.array(sorted(FALSE_TEXT))))
    fast = pc.if_else(known, is_true, pa.scalar(None, pa.bool_()))
    return _merge(values, fast, pc.or_(known, pc.is_null(strings)), "boolean")


def _merge(values: Values, fast: pa.Array, done: pa.Array, target: ColumnType) -> Coerced:
    """`fast` where `done`, the per-value parser's result elsewhere."""
    if pc.all(done).as_py():
        return Coerced(fast)
    rows = pc.indices_nonzero(pc.invert(done)).to_pylist()
    slow = _per_value(values.raw, rows, target)
    placed: list[object] = [None] * len(values.raw)
    for row, value in zip(rows, slow.array.to_pylist(), strict=True):
        placed[row] = value
    return Coerced(pc.coalesce(fast, pa.array(placed, fast.type)), slow.rejected)


def _list_json(lists: pa.ListArray) -> pa.Array | None:
    """Each list's JSON text as orjson writes it, for lists of strings (none needing an
    escape), integers or booleans; None for other lists."""
    items = lists.flatten()
    if pa.types.is_string(items.type):
        if pc.any(pc.match_substring_regex(items, r'[\x00-\x1f"\\]')).as_py():
            return None
        texts = pc.binary_join_element_wise('"', items, '"', "")
    elif pa.types.is_integer(items.type) or pa.types.is_boolean(items.type):
        texts = pc.cast(items, pa.string())
    elif items.type == pa.null():
        texts = pa.nulls(len(items), pa.string())
    else:
        return None
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    listed = pa.ListArray.from_arrays(offsets, pc.fill_null(texts, "null"), mask=lists.is_null())
    joined = pc.binary_join(listed, ",")
    return pc.binary_join_element_wise("[", joined, "]", "")


def _cast(arrow_type: pa.DataType) -> Cast:
    return lambda strings: pc.cast(strings, arrow_type)


def _date_part(strings: pa.Array) -> pa.Array:
    return pc.cast(pc.utf8_slice_codeunits(strings, 0, 10), pa.date32())  # the date as written


def _any(masks: list[pa.Array]) -> pa.Array:
    out = masks[0]
    for mask in masks[1:]:
        out = pc.or_(out, mask)
    return out


def _only_zero_one(ints: pa.Array) -> bool:
    return bool(pc.all(pc.or_(pc.is_in(ints, pa.array([0, 1])), pc.is_null(ints))).as_py())


def _epoch_micros(numbers: pa.Array) -> pa.Array | None:
    """Epoch seconds, or milliseconds above EPOCH_MS_ABOVE, as int64 microseconds; None when
    a value is out of range."""
    if pa.types.is_integer(numbers.type):
        is_ms = pc.greater(pc.abs_checked(numbers), int(EPOCH_MS_ABOVE))
        micros = pc.multiply_checked(numbers, pc.if_else(is_ms, 1_000, 1_000_000))
    else:
        is_ms = pc.greater(pc.abs(numbers), EPOCH_MS_ABOVE)
        scaled = pc.multiply(numbers, pc.if_else(is_ms, 1e3, 1e6))
        if not pc.all(pc.less_equal(pc.abs(scaled), float(MAX_MICROS))).as_py():
            return None
        micros = pc.cast(pc.round(scaled), pa.int64())
    if not pc.all(
        pc.and_(pc.greater_equal(micros, MIN_MICROS), pc.less_equal(micros, MAX_MICROS))
    ).as_py():
        return None  # before year 1 or after 9999: the per-value parser rejects them
    return micros
