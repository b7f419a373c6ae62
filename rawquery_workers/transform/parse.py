"""Read one JSON value as a column type, the slow and lenient way (Python, value by value).

Each parser returns the value in the column's Python form or raises ValueError/TypeError/
OverflowError for a value it cannot read. `coerce` calls them only for the values its
vectorised path left over.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import orjson

TRUE_TEXT = frozenset({"true", "t", "yes", "y", "on", "1"})
FALSE_TEXT = frozenset({"false", "f", "no", "n", "off", "0"})
EPOCH_MS_ABOVE = 1e11  # an epoch number greater than this (in absolute value) is milliseconds
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_MICROS = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
MIN_MICROS = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def json_text(value: object) -> str:
    """`value` as JSON text (orjson; the stdlib for what orjson refuses, e.g. huge ints or
    nesting past its 254 levels; past the stdlib's ~1,000 levels too, `_deep_json_text`)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        try:
            return json.dumps(value, separators=(",", ":"), default=str)  # ASCII: always UTF-8
        except RecursionError:
            return _deep_json_text(value)


def _deep_json_text(value: object) -> str:
    """What `json.dumps(value, separators=(",", ":"), default=str)` writes, built with a
    stack of its own instead of recursion: for values nested deeper than json.dumps goes
    (http.parse_json admits up to 1,024 levels)."""
    parts: list[str] = []
    todo: list[tuple[bool, object]] = [(False, value)]  # (is literal text, item)
    while todo:
        literal, item = todo.pop()
        if literal:
            parts.append(item)  # type: ignore[arg-type]
        elif isinstance(item, dict):
            todo.append((True, "}"))
            entries = list(item.items())
            for index in range(len(entries) - 1, -1, -1):
                key, inner = entries[index]
                todo.append((False, inner))
                todo.append((True, ("," if index else "") + json.dumps(str(key)) + ":"))
            todo.append((True, "{"))
        elif isinstance(item, list | tuple):
            todo.append((True, "]"))
            for index in range(len(item) - 1, -1, -1):
                todo.append((False, item[index]))
                if index:
                    todo.append((True, ","))
            todo.append((True, "["))
        else:
            parts.append(json.dumps(item, default=str))
    return "".join(parts)


def clean_text(text: str) -> str:
    """`text` writable as UTF-8: a lone surrogate (JSON "\\ud800") becomes the text \\ud800."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def plain_text(value: object) -> str:
    """A string as itself, anything else as its JSON text."""
    return value if type(value) is str else json_text(value)


def parse_int(value: object) -> int:
    if type(value) is str:
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            raise ValueError(value)
        number = int(text) if text.lstrip("+-").isdigit() else _integral(float(text))
    elif type(value) is int:
        number = value
    elif type(value) in (float, Decimal):
        number = _integral(value)  # type: ignore[arg-type]
    else:
        raise TypeError(value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise OverflowError(value)
    return number


def _integral(value: float | Decimal) -> int:
    if value != value or value in (float("inf"), float("-inf")) or value != int(value):
        raise ValueError(value)
    return int(value)


def parse_float(value: object) -> float:
    if type(value) is str:
        text = value.strip()
        if "_" in text:
            raise ValueError(value)
        return float(text)
    if type(value) in (int, float, Decimal):
        return float(value)  # type: ignore[arg-type]
    raise TypeError(value)


def parse_bool(value: object) -> bool:
    if type(value) is bool:
        return value
    if type(value) is str:
        text = value.strip().lower()
        if text in TRUE_TEXT or text in FALSE_TEXT:
            return text in TRUE_TEXT
    elif type(value) in (int, float) and value in (0, 1):
        return value == 1
    raise ValueError(value)


def parse_timestamp(value: object) -> datetime:
    if type(value) in (int, float, Decimal):
        return _from_epoch(value)  # type: ignore[arg-type]
    if type(value) is datetime:
        stamp = value
    elif type(value) is date:
        stamp = datetime(value.year, value.month, value.day)
    elif type(value) is str:
        text = value.strip()
        if _NUMBER.fullmatch(text):
            number = float(text) if "." in text or "e" in text.lower() else int(text)
            return _from_epoch(number)
        stamp = datetime.fromisoformat(text)
    else:
        raise TypeError(value)
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _from_epoch(number: float | Decimal) -> datetime:
    scale = 1_000 if abs(float(number)) > EPOCH_MS_ABOVE else 1_000_000
    micros = int(number * scale) if type(number) is int else round(float(number) * scale)
    if not MIN_MICROS <= micros <= MAX_MICROS:
        raise OverflowError(number)
    return _EPOCH + timedelta(microseconds=micros)


def parse_date(value: object) -> date:
    if type(value) is date:
        return value
    if type(value) is str and not _NUMBER.fullmatch(value.strip()):
        return datetime.fromisoformat(value.strip()).date()  # the date as written
    return parse_timestamp(value).date()


PARSERS: dict[str, Callable[[object], object]] = {
    "string": plain_text,
    "json": json_text,
    "integer": parse_int,
    "float": parse_float,
    "boolean": parse_bool,
    "timestamp": parse_timestamp,
    "date": parse_date,
}
