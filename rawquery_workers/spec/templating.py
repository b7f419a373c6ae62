"""`{{name}}` placeholders in spec strings: values are substituted, nothing is evaluated.

A name is letters, digits, `_` and dots (`auth.token` is one flat name, not attribute
access). There are no filters, expressions or code: that keeps a spec typed and a secret
from ever being computed into something else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from pydantic import JsonValue

from rawquery_workers.errors import SpecError

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")


def strings(value: JsonValue) -> Iterator[str]:
    """Every string in `value`, searching nested dicts and lists."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def placeholders(value: JsonValue) -> Iterator[str]:
    """Every placeholder name in `value`, searching nested dicts and lists."""
    for text in strings(value):
        yield from (m.group(1) for m in _PLACEHOLDER.finditer(text))


def is_only(value: JsonValue, name: str) -> bool:
    """True when `value` is exactly one placeholder for `name` (e.g. `"{{cursor}}"`)."""
    if not isinstance(value, str):
        return False
    match = _PLACEHOLDER.fullmatch(value.strip())
    return bool(match and match.group(1) == name)


def render(value: JsonValue, names: Mapping[str, str], where: str = "") -> JsonValue:
    """`value` with each placeholder replaced by its value in `names`.

    An unknown name raises SpecError naming it and `where`; values are never in the message.
    """
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: _lookup(m.group(1), names, where), value)
    if isinstance(value, dict):
        return {k: render(v, names, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, names, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _lookup(name: str, names: Mapping[str, str], where: str) -> str:
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        place = f"{where}: " if where else ""
        raise SpecError(f"{place}template '{{{{{name}}}}}' has no value (known: {known})")
    return str(names[name])
