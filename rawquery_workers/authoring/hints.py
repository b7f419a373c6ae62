"""Spec hints: what a response suggests the stream's spec is missing. Pure functions.

`rq spec preview` reads a few pages and asks these functions about the first one:

- `pagination_hints`: the stream has no `pagination` but the response looks paginated: a
  `Link: <...>; rel="next"` header, a next-page URL or a cursor token in the body (GraphQL
  `pageInfo` too), a `has_more` flag, or a total count larger than the page.
- `data_path_hint`: `data_path` is absent (or points nowhere) but the body holds one
  obvious array of records.
- `type_hints`: a column holds only ISO 8601 timestamp/date strings (or epoch seconds
  under a time-like name) but the stream's `types` does not declare it.

Each hint carries a message and the JSON fragment to merge into the stream's entry.
The body is searched through objects only (never inside arrays, where the records are),
at most a few levels deep, and only keys a dotted path can address (no dots in them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson
from pydantic import JsonValue

from rawquery_workers.paginate import PageResponse, paginator_for
from rawquery_workers.spec.jsonpath import MISSING, get_path
from rawquery_workers.spec.models import LinkHeaderPagination, Stream

HintKind = Literal["pagination", "data_path", "types"]
_MAX_DEPTH = 4
_NEXT_URL_KEYS = (
    "next", "next_page", "next_url", "nextUrl", "nextPage", "next_page_url", "nextPageUrl",
    "next_link", "nextLink", "link",
)  # fmt: skip
_CURSOR_PARAMS = {
    "after": "after",
    "next_cursor": "cursor",
    "nextCursor": "cursor",
    "cursor": "cursor",
    "after_cursor": "cursor",
    "next_page_token": "page_token",
    "nextPageToken": "pageToken",
    "next_token": "next_token",
    "nextToken": "nextToken",
    "continuation_token": "continuation_token",
    "continuationToken": "continuationToken",
    "scroll_id": "scroll_id",
}
_HAS_MORE_KEYS = ("has_more", "hasMore", "has_next", "hasNext", "has_next_page", "hasNextPage")
_TOTAL_KEYS = (
    "total", "total_count", "totalCount", "total_results", "totalResults", "total_items",
    "totalItems", "total_records", "totalRecords", "count",
)  # fmt: skip
_PAGE_KEYS = ("page", "current_page", "currentPage", "page_number", "total_pages", "totalPages")
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_NAME = re.compile(r"(^|_)(at|time|date|created|updated|modified|timestamp)$|At$|Time$")
_EPOCH_SECONDS = (946_684_800, 4_102_444_800)  # 2000-01-01 .. 2100-01-01


@dataclass(frozen=True, slots=True)
class Hint:
    """One suggestion: `fragment` is what to add to the stream's entry in the spec."""

    kind: HintKind
    message: str
    fragment: dict[str, JsonValue]

    def fragment_json(self) -> str:
        return orjson.dumps(self.fragment, option=orjson.OPT_INDENT_2).decode()

    def as_dict(self) -> dict[str, JsonValue]:
        return {"kind": self.kind, "message": self.message, "fragment": self.fragment}


# --- pagination ----------------------------------------------------------------------------


def pagination_hints(
    stream: Stream,
    body: JsonValue,
    headers: Mapping[str, str],
    records_count: int,
    api_type: str = "rest",
) -> list[Hint]:
    """At most one pagination hint for a stream without `pagination` (first match wins:
    Link header, GraphQL pageInfo, cursor token, next-page URL, has_more, total count)."""
    if stream.pagination is not None:
        return []
    if api_type == "graphql":
        hint = _graphql_page_info(body)
        return [hint] if hint else []
    finders: tuple[Callable[[], Hint | None], ...] = (
        lambda: _link_rel_next(headers),
        lambda: _cursor_token(body),
        lambda: _next_url(body),
        lambda: _has_more(body, stream.data_path or obvious_array_path(body)),
        lambda: _total_count(body, records_count),
    )
    for find in finders:
        if hint := find():
            return [hint]
    return []


def next_link(value: str | None, rel: str = "next") -> str | None:
    """The URL of the `rel` link in a Link header value, or None: the link that the Link
    header kind's own paginator would follow from this response."""
    if not value:
        return None
    kind = LinkHeaderPagination.model_validate({"type": LinkHeaderPagination.tag(), "rel": rel})
    paginator = paginator_for(kind)
    paginator.update(PageResponse(url="", body=None, headers={"link": value}), 0)
    return paginator.next_reference


def _link_rel_next(headers: Mapping[str, str]) -> Hint | None:
    value = next((v for k, v in headers.items() if k.lower() == "link"), None)
    url = next_link(value)
    if url is None:
        return None
    return Hint(
        "pagination",
        f'the response has a Link header with rel="next" ({_short(url)}) but the stream '
        "has no pagination: only the first page would be read",
        {"pagination": {"type": LinkHeaderPagination.tag()}},
    )


def _graphql_page_info(body: JsonValue) -> Hint | None:
    for path, value in walk_objects(body):
        if path.endswith("pageInfo") and isinstance(value, dict) and "endCursor" in value:
            fragment: dict[str, JsonValue] = {
                "type": "cursor",
                "cursor_variable": "cursor",
                "cursor_path": f"{path}.endCursor",
            }
            if "hasNextPage" in value:
                fragment["has_more_path"] = f"{path}.hasNextPage"
            return Hint(
                "pagination",
                f"the response has a Relay pageInfo at '{path}' but the stream has no "
                "pagination; declare `$cursor: String` in the query and pass `after: $cursor`",
                {"pagination": fragment},
            )
    return None


def _cursor_token(body: JsonValue) -> Hint | None:
    for path, value in walk_objects(body):
        key = path.rsplit(".", 1)[-1]
        if key not in _CURSOR_PARAMS or not _is_token(value):
            continue
        fragment: dict[str, JsonValue] = {
            "type": "cursor",
            "cursor_path": path,
            "param": _CURSOR_PARAMS[key],
        }
        if more := _find_key(body, _HAS_MORE_KEYS, bool):
            fragment["has_more_path"] = more
        return Hint(
            "pagination",
            f"the response has a next-page token at '{path}' but the stream has no "
            f"pagination; check in the API's docs which query parameter takes it "
            f"(guessed: '{_CURSOR_PARAMS[key]}')",
            {"pagination": fragment},
        )
    return None


def _next_url(body: JsonValue) -> Hint | None:
    for path, value in walk_objects(body):
        key = path.rsplit(".", 1)[-1]
        if key in _NEXT_URL_KEYS and isinstance(value, str) and _looks_like_url(value):
            return Hint(
                "pagination",
                f"the response has a next-page URL at '{path}' ({_short(value)}) but the "
                "stream has no pagination: only the first page would be read",
                {"pagination": {"type": "next_url", "next_url_path": path}},
            )
    return None


def _has_more(body: JsonValue, data_path: str | None) -> Hint | None:
    path = _find_key(body, _HAS_MORE_KEYS, bool)
    if path is None or get_path(body, path) is not True:
        return None
    records = get_path(body, data_path) if data_path else body
    last_id = isinstance(records, list) and records and isinstance(records[-1], dict)
    if not last_id or "id" not in records[-1]:  # type: ignore[index]
        return Hint(
            "pagination",
            f"the response says '{path}' is true: there are more pages, but the stream has "
            "no pagination and no next-page token was found; see the API's docs",
            {
                "pagination": {
                    "type": "cursor",
                    "cursor_path": "<path of the next-page token>",
                    "param": "<query parameter that takes it>",
                    "has_more_path": path,
                }
            },
        )
    return Hint(
        "pagination",
        f"the response says '{path}' is true but the stream has no pagination; APIs like "
        "Stripe continue after the last record's id (check the parameter name)",
        {
            "pagination": {
                "type": "cursor",
                "cursor_path": f"{data_path}.-1.id" if data_path else "-1.id",
                "param": "starting_after",
                "has_more_path": path,
            }
        },
    )


def _total_count(body: JsonValue, records_count: int) -> Hint | None:
    if records_count < 1:
        return None
    path = _find_key(body, _TOTAL_KEYS, int)
    total = get_path(body, path) if path else None
    if not isinstance(total, int) or isinstance(total, bool) or total <= records_count:
        return None
    paged = _find_key(body, _PAGE_KEYS, int)
    shown = f"the response says '{path}' is {total} but holds {records_count} records"
    if paged is not None:
        return Hint(
            "pagination",
            f"{shown} and has a page number at '{paged}': the stream needs pagination",
            {
                "pagination": {
                    "type": "page_number",
                    "param": "page",
                    "page_size_param": "per_page",
                    "page_size": records_count,
                }
            },
        )
    return Hint(
        "pagination",
        f"{shown}: the stream needs pagination (offset shown; check the parameter names)",
        {
            "pagination": {
                "type": "offset",
                "param": "offset",
                "limit_param": "limit",
                "page_size": records_count,
            }
        },
    )


# --- data_path -----------------------------------------------------------------------------


def data_path_hint(stream: Stream, body: JsonValue) -> Hint | None:
    """A hint when `data_path` is absent or wrong but the body holds one obvious array."""
    if stream.data_path:
        found = get_path(body, stream.data_path)
        if found is not MISSING and (found is None or isinstance(found, list)):
            return None
    path = obvious_array_path(body)
    if path is None:
        return None
    if stream.data_path:
        why = f"data_path '{stream.data_path}' does not point at an array of records"
    else:
        why = "the stream has no data_path, so the whole body would be one record"
    return Hint(
        "data_path",
        f"{why}; the records seem to be the array at '{path}'",
        {"data_path": path},
    )


def obvious_array_path(body: JsonValue) -> str | None:
    """The path of the one non-empty array of objects in `body`'s objects, or None when
    there is none or several (an `errors` array does not count)."""
    if not isinstance(body, dict):
        return None
    found = [
        path
        for path, value in walk_objects(body)
        if isinstance(value, list)
        and value
        and all(isinstance(item, dict) for item in value)
        and path.rsplit(".", 1)[-1] != "errors"
    ]
    return found[0] if len(found) == 1 else None


# --- types ---------------------------------------------------------------------------------


def type_hints(columns: Mapping[str, Sequence[object]], declared: Collection[str]) -> Hint | None:
    """One hint declaring every untyped column that looks like a timestamp or a date.

    `columns` maps the spec's names for the columns (after flatten, before rename; a child
    table's as `field.column`) to sample values; `declared` are the names in `types`.
    """
    found: dict[str, JsonValue] = {}
    for name, values in columns.items():
        if name in declared or name.startswith("_rq_"):
            continue
        kind = looks_like_time(name, values)
        if kind is not None:
            found[name] = kind
    if not found:
        return None
    names = ", ".join(f"'{n}'" for n in found)
    return Hint(
        "types",
        f"{names} look{'s' if len(found) == 1 else ''} like timestamps or dates but would be "
        "stored as plain columns; declare their types",
        {"types": found},
    )


def looks_like_time(name: str, values: Sequence[object]) -> str | None:
    """ "timestamp", "date" or None for one column's sample values."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, str) and _TIMESTAMP.match(v.strip()) for v in present):
        return "timestamp"
    if all(isinstance(v, str) and _DATE.match(v.strip()) for v in present):
        return "date"
    low, high = _EPOCH_SECONDS
    epoch = all(isinstance(v, int) and not isinstance(v, bool) and low <= v < high for v in present)
    return "timestamp" if epoch and _TIME_NAME.search(name) else None


# --- walking -------------------------------------------------------------------------------


def walk_objects(body: JsonValue, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, object]]:
    """(dotted path, value) of every key in `body`'s nested objects, breadth first within
    an object; lists are not entered; keys with a dot are skipped (no path names them)."""
    if not isinstance(body, dict) or depth >= _MAX_DEPTH:
        return
    nested = []
    for key, value in body.items():
        if "." in key or not key:
            continue
        path = f"{prefix}.{key}" if prefix else key
        yield path, value
        if isinstance(value, dict):
            nested.append((path, value))
    for path, value in nested:
        yield from walk_objects(value, path, depth + 1)


def _find_key(body: JsonValue, keys: Sequence[str], kind: type) -> str | None:
    for path, value in walk_objects(body):
        if path.rsplit(".", 1)[-1] in keys and isinstance(value, kind):
            if kind is int and isinstance(value, bool):
                continue
            return path
    return None


def _is_token(value: object) -> bool:
    if isinstance(value, str):
        return bool(value.strip()) and not _looks_like_url(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _looks_like_url(value: str) -> bool:
    text = value.strip()
    return text.startswith(("http://", "https://")) or (text.startswith("/") and len(text) > 1)


def _short(url: str, limit: int = 80) -> str:
    return url if len(url) <= limit else url[:limit] + "…"
