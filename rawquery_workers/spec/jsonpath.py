"""Dotted paths into parsed JSON (`"data.viewer.repositories.nodes"`), in one place.

A path is keys joined by dots; a segment made of digits indexes a list (`"items.0.id"`),
and a negative one counts from the end (`"data.-1.id"`: the last item's id, for APIs such
as Stripe whose next page starts after the last record). Keys that themselves contain a
dot cannot be addressed. There is nothing else: no wildcards, filters or expressions, so
a path in a spec always means one value.
"""

from __future__ import annotations

from typing import Final


class _Missing:
    """The marker for "no value at this path" (distinct from a JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


def get_path(obj: object, path: str, default: object = MISSING) -> object:
    """The value at dotted `path` inside `obj`, or `default` (MISSING) when it is absent.

    An empty path returns `obj` itself. A JSON null on the way is absent below it.
    """
    current = obj
    for segment in split_path(path):
        if isinstance(current, dict) and segment in current:
            current = current[segment]
        elif isinstance(current, list) and (index := _index(segment, len(current))) is not None:
            current = current[index]
        else:
            return default
    return current


def _index(segment: str, length: int) -> int | None:
    """The list index a segment names (`0`, `-1`), or None when it names none."""
    digits = segment[1:] if segment.startswith("-") else segment
    if not digits.isdigit():
        return None
    index = int(segment)
    return index if -length <= index < length else None


def split_path(path: str) -> list[str]:
    """The segments of a dotted path; `""` has none."""
    return [segment for segment in path.split(".") if segment] if path else []
