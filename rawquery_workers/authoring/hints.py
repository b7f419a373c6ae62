"""Spec hints: what a response suggests the stream's spec is missing. Pure functions.

`rq spec preview` reads a few pages and asks these functions about the first one:

- `pagination_hints`: the stream has no `pagination` but the response looks paginated: a
  `Link: <...>; rel="next"` header, an `X-Next-Page` token or a next-page URL in another
  header (`X-Next-Url`), a next-page URL or a cursor token in the body (GraphQL `pageInfo`
  too), a `has_more` flag (Stripe: continue after the last record's id), or a total count
  larger than the page (`total_path`). An `X-Total` header is only quoted in the message.
- `error_path_hint`: no `error_path` is set but a 2xx body reads like an API error (`ok` or
  `success` false, or a top-level `error`/`errors` string).
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

HintKind = Literal["pagination", "data_path", "types", "error_path"]
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
# Response headers, by lowercased name without any "x-" prefix: a URL or a page token.
_NEXT_URL_HEADERS = ("next", "next-url", "next-page-url", "next-link", "next-page-link")
_CURSOR_HEADERS = {"next-page": "page"}  # GitLab: X-Next-Page: 2 (empty on the last page)
_HAS_MORE_KEYS = ("has_more", "hasMore", "has_next", "hasNext", "has_next_page", "hasNextPage")
_ID_KEYS = ("id", "_id", "uuid", "ID", "Id")
_TOTAL_KEYS = (
    "total", "total_count", "totalCount", "totalSize", "total_size", "total_results",
    "totalResults", "total_items", "totalItems", "total_records", "totalRecords", "count",
)  # fmt: skip
# error_path: a flag that is false on errors (Slack, Telegram, Cloudflare), then the keys
# that may hold the error (any value); without the flag, only an `error`/`errors` string.
_FAILURE_FLAGS = ("ok", "success")
_ERROR_KEYS = ("error", "errors")
_FLAGGED_ERROR_KEYS = (*_ERROR_KEYS, "error_message", "errorMessage", "message", "description")
_EMPTY: tuple[object, ...] = (None, False, "", [], {})
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
    Link header, GraphQL pageInfo, next-page header, cursor token, next-page URL,
    has_more, total count)."""
    if stream.pagination is not None:
        return []
    if api_type == "graphql":
        hint = _graphql_page_info(body)
        return [hint] if hint else []
    finders: tuple[Callable[[], Hint | None], ...] = (
        lambda: _link_rel_next(headers),
        lambda: _next_header(headers),
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
    url = next_link(_header(headers, "link"))
    if url is None:
        return None
    return Hint(
        "pagination",
        f'the response has a Link header with rel="next" ({_short(url)}) but the stream '
        f"has no pagination: only the first page would be read{_total_note(headers)}",
        {"pagination": {"type": LinkHeaderPagination.tag()}},
    )


def _next_header(headers: Mapping[str, str]) -> Hint | None:
    """A next-page URL (`X-Next-Url`) or token (GitLab's `X-Next-Page`) in a header."""
    for key, value in headers.items():
        name, header = key.lower().removeprefix("x-"), _header_name(key)
        if not value.strip() or name not in (*_NEXT_URL_HEADERS, *_CURSOR_HEADERS):
            continue
        if _looks_like_url(value):
            return Hint(
                "pagination",
                f"the response has a next-page URL in its {header} header ({_short(value)}) "
                f"but the stream has no pagination: only the first page would be read"
                f"{_total_note(headers)}",
                {"pagination": {"type": "next_url", "next_url_header": header}},
            )
        if param := _CURSOR_HEADERS.get(name):
            return Hint(
                "pagination",
                f"the response has a next-page token in its {header} header "
                f"('{_short(value)}') but the stream has no pagination; check in the API's "
                f"docs which query parameter takes it (guessed: '{param}'){_total_note(headers)}",
                {"pagination": {"type": "cursor", "cursor_header": header, "param": param}},
            )
    return None


def _total_note(headers: Mapping[str, str]) -> str:
    """A note quoting an `X-Total` header: `total_path` reads the body, so nothing to set."""
    total = (_header(headers, "x-total") or "").strip()
    return f" (its X-Total header says {total} records in all)" if total.isdigit() else ""


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
    id_key = _last_record_id(get_path(body, data_path) if data_path else body)
    if id_key is None:
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
        f"the response says '{path}' is true but the stream has no pagination and no "
        f"next-page token; APIs like Stripe continue after the last record's '{id_key}' "
        "(check in the API's docs which query parameter takes it; guessed: 'starting_after')",
        {
            "pagination": {
                "type": "cursor",
                "cursor_path": f"last_record.{id_key}",
                "param": "starting_after",
                "has_more_path": path,
            }
        },
    )


def _last_record_id(records: object) -> str | None:
    """The id-like key of the last record in `records` (a list of objects), or None."""
    if not isinstance(records, list) or not records or not isinstance(records[-1], dict):
        return None
    last = records[-1]
    return next((k for k in _ID_KEYS if _is_token(last.get(k))), None)


def _total_count(body: JsonValue, records_count: int) -> Hint | None:
    if records_count < 1:
        return None
    path = _find_key(body, _TOTAL_KEYS, int)
    total = get_path(body, path) if path else None
    if not isinstance(total, int) or isinstance(total, bool) or total <= records_count:
        return None
    paged = _find_key(body, _PAGE_KEYS, int)
    shown = f"the response says '{path}' is {total} but holds {records_count} records"
    ends = f"total_path '{path}' ends the walk at that total"
    if paged is not None:
        return Hint(
            "pagination",
            f"{shown} and has a page number at '{paged}': the stream needs pagination "
            f"({ends}; check the parameter names)",
            {
                "pagination": {
                    "type": "page_number",
                    "param": "page",
                    "page_size_param": "per_page",
                    "page_size": records_count,
                    "total_path": path,
                }
            },
        )
    return Hint(
        "pagination",
        f"{shown}: the stream needs pagination (offset shown, {ends}; check the parameter names)",
        {
            "pagination": {
                "type": "offset",
                "param": "offset",
                "limit_param": "limit",
                "page_size": records_count,
                "total_path": path,
            }
        },
    )


# --- error_path ----------------------------------------------------------------------------


def error_path_hint(body: JsonValue, status: int, error_path: str | None) -> Hint | None:
    """A hint when a 2xx body reads like an API error and no `error_path` is set: `ok` or
    `success` false with an error field (Slack, Telegram, Cloudflare), or a top-level
    `error`/`errors` string. `error_path` is the one in force (the stream's or the spec's)."""
    if error_path or not 200 <= status < 300 or not isinstance(body, dict):
        return None
    flag = next((k for k in _FAILURE_FLAGS if body.get(k) is False), None)
    if flag is not None:
        key = next((k for k in _FLAGGED_ERROR_KEYS if body.get(k) not in _EMPTY), None)
    else:
        key = next((k for k in _ERROR_KEYS if _is_text(body.get(k))), None)
    if key is None:
        return None
    said = f"'{flag}' is false and '{key}' is" if flag else f"'{key}' is"
    return Hint(
        "error_path",
        f"the response is HTTP {status} but its body says {said} {_quoted(body[key])}: "
        "without error_path a sync takes such an answer for data; with it the sync fails "
        "quoting that value (it may go at the top level, for every stream)",
        {"error_path": key},
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


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_token(value: object) -> bool:
    if isinstance(value, str):
        return bool(value.strip()) and not _looks_like_url(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _looks_like_url(value: str) -> bool:
    text = value.strip()
    return text.startswith(("http://", "https://")) or (text.startswith("/") and len(text) > 1)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _header_name(key: str) -> str:
    """`x-next-page` -> `X-Next-Page` (httpx gives header names lowercased)."""
    return "-".join(part.capitalize() for part in key.split("-"))


def _quoted(value: object, limit: int = 80) -> str:
    if isinstance(value, str):
        return f"'{_short(value, limit)}'"
    return _short(orjson.dumps(value).decode(), limit)


def _short(url: str, limit: int = 80) -> str:
    return url if len(url) <= limit else url[:limit] + "…"
