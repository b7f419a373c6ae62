"""Reading one stream's pages from its API: send the requests, find the records.

The first request is `requests.base_request` (URL, params, headers, body, templates). A
GraphQL 200 answer carrying a non-empty `errors` array fails the stream with the API's
messages; so does a 200 answer with a value at `error_path` (Slack's `"error"`). An answer
whose status is in the stream's `ignore_status` is an empty last page.

A child stream (`parent`) walks its pagination once per parent row (given by the runner,
read from the parent's table), in the order of the parent values it uses; each record gets
the `parent.fields` columns, and the resume state names the parent it was in.

Records sit at `data_path` (dotted). Without `data_path` the body is the record array, and a
body that is one object is one record. A JSON null at `data_path` (or a 204) is a page
without records. Anything else that is not an array of JSON objects fails the stream with
ResponseError naming the stream, page and redacted URL: items that are not objects (strings,
numbers, nested arrays) are not wrapped into made-up columns, because that almost always
means `data_path` points at the wrong place.

Two loop guards: a paginator refuses a token/URL it already saw, and a page that repeats
the previous page's records exactly while the paginator still sees a next page (an API
ignoring `offset`/`page`) raises PaginationLoopError.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import cast

import orjson
from pydantic import JsonValue

from rawquery_workers.errors import PaginationLoopError, ResponseError, SourceError
from rawquery_workers.http.client import ApiClient, ApiResponse, parse_json
from rawquery_workers.http.redact import Redactor
from rawquery_workers.paginate import PageResponse, Paginator, RequestSpec, paginator_for
from rawquery_workers.paginate.ahead import Ahead
from rawquery_workers.paginate.requests import Parent, base_request, endpoint_url
from rawquery_workers.spec.jsonpath import MISSING, get_path
from rawquery_workers.spec.models import Spec, Stream
from rawquery_workers.transform.parse import json_text

__all__ = ["Page", "base_request", "endpoint_url", "extract_records", "read_pages"]

Record = dict[str, JsonValue]
_MAX_GRAPHQL_ERRORS = 5
_MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a stream. `next_state` is the paginator state to resume AFTER this page
    (None when it was the last), scrubbed of secrets (`Redactor.scrub_state`); `raw_next`
    the token/URL found for the next page, redacted."""

    number: int  # 1-based within this read
    records: list[Record]
    url: str  # redacted
    status: int
    next_state: dict[str, JsonValue] | None
    raw_next: str | None
    body: bytes = b""  # the response body the records were parsed from
    warning: str | None = None  # the last page: the API reported more than was read
    sent_body: JsonValue = None  # the JSON body of the request (None: none was sent)
    parent: Parent | None = None  # a child request's parent values
    total: int | None = None  # the record count the API reported so far (`total_path`)


def read_pages(
    spec: Spec,
    stream: Stream,
    api: ApiClient,
    *,
    cursor: str | None = None,
    resume: dict[str, JsonValue] | None = None,
    max_pages: int | None = None,
    parents: Sequence[Parent] | None = None,
) -> Iterator[Page]:
    """The stream's pages in order, from the first page or from `resume`, at most
    `max_pages` of them; `parents` are the parent rows of a child stream. Raises
    SourceError kinds (and SpecError for a bad endpoint or a missing parent value).

    With the spec's `concurrency` above 1, offset and page_number pages are asked for
    ahead and child streams request several parents at once (paginate/ahead.py); a read
    of `max_pages` asks for no page it will not read."""
    limit = spec.in_flight if max_pages is None else 1
    if stream.parent is None:
        base = base_request(spec, stream, cursor)
        pages = _walk(spec, stream, api, base, resume, concurrency=limit)
    else:
        pages = _child_pages(spec, stream, api, cursor, resume, parents or [], limit)
    for page in pages:
        yield page
        if max_pages is not None and page.number >= max_pages:
            return


@dataclass(frozen=True, slots=True)
class _Answer:
    """A page's response and the records found in it (checked for API errors)."""

    response: ApiResponse
    records: list[Record]


def _walk(
    spec: Spec,
    stream: Stream,
    api: ApiClient,
    base: RequestSpec,
    resume: dict[str, JsonValue] | None,
    number: int = 0,
    concurrency: int = 1,
) -> Iterator[Page]:
    """One pagination walk from `base` (or `resume`); pages are numbered after `number`.
    The pages the paginator can name ahead are requested `concurrency` at once."""
    paginator = paginator_for(
        stream.pagination, spec.type, stream=stream.name, redactor=api.redactor
    )
    if resume:
        _restore(paginator, resume, stream)
    request: RequestSpec | None = paginator.first_request(base)
    previous: list[Record] | None = None
    ahead: Ahead[_Answer] = Ahead(concurrency)
    try:
        while request is not None:
            number += 1
            answer = ahead.take(_key(request), partial(_fetch, spec, stream, api, request, number))
            response, records = answer.response, answer.records
            if response.status in stream.ignore_status:
                yield Page(number, [], response.redacted_url, response.status, None, None)
                return
            last = records[-1] if records else None
            page = PageResponse(
                response.url, response.json, response.headers, response.status, last
            )
            paginator.update(page, len(records))
            if paginator.has_next_page and _same_records(records, previous):
                raise PaginationLoopError(
                    f"stream {stream.name}, page {number} ({response.redacted_url}): the API "
                    f"returned exactly the same {len(records)} records as the page before; it "
                    "seems to ignore the pagination parameters; stopping to avoid an "
                    "infinite loop (check the stream's pagination settings)"
                )
            previous = records
            reference = paginator.next_reference
            sent = request.json
            request = paginator.next_request(request)
            if request is not None and ahead.limit > 1:
                following = [request, *paginator.ahead(request, ahead.limit - 1)]
                ahead.plan(
                    [
                        (_key(r), partial(_fetch, spec, stream, api, r, number + 1 + i))
                        for i, r in enumerate(following)
                    ]
                )
            yield Page(
                number=number,
                records=records,
                url=response.redacted_url,
                status=response.status,
                next_state=_next_state(paginator, api.redactor),
                raw_next=api.redactor.redact_url(reference) if reference is not None else None,
                body=response.content,
                warning=None if paginator.has_next_page else paginator.end_warning,
                sent_body=sent,
                total=paginator.reported_total,
            )
    finally:
        ahead.close()


def _fetch(
    spec: Spec, stream: Stream, api: ApiClient, request: RequestSpec, number: int
) -> _Answer:
    """Send one page's request; its records. Raises what the page would fail the stream
    with (run ahead, it is raised only if the page is read)."""
    try:
        response = api.request(
            request.method,
            request.url,
            params=request.params,
            json=request.json,
            headers=request.headers,
            ignore_status=stream.ignore_status,
        )
    except SourceError as exc:  # say which stream and page (the URL is already in it)
        exc.args = (f"stream {stream.name}, page {number}: {exc}", *exc.args[1:])
        raise
    if response.status in stream.ignore_status:
        return _Answer(response, [])
    where = f"stream {stream.name}, page {number} ({response.redacted_url})"
    if spec.type == "graphql":
        raise_graphql_errors(response.json, where, api.redactor)
    if (error_path := spec.error_path_for(stream)) is not None:
        raise_body_error(response.json, error_path, where, api.redactor)
    return _Answer(response, extract_records(response.json, stream.data_path, where))


def _key(request: RequestSpec) -> tuple[str, str, bytes]:
    """What tells two page requests apart: method, URL with its query, body."""
    body = orjson.dumps(request.json, option=orjson.OPT_SORT_KEYS) if request.json else b""
    return request.method, request.full_url, body


# --- child requests ------------------------------------------------------------------------

_BUFFERED_PAGES = 8  # of a parent's walk read ahead; the rest is read when it is its turn


def _child_pages(
    spec: Spec,
    stream: Stream,
    api: ApiClient,
    cursor: str | None,
    resume: dict[str, JsonValue] | None,
    parents: Sequence[Parent],
    concurrency: int = 1,
) -> Iterator[Page]:
    """One walk per parent row, in the order of their keys; state `{"parent": KEY, "page":
    STATE}` resumes inside the walk of the parent KEY (STATE None: at its first page).
    Up to `concurrency` parents' walks run at once; their pages come out in order."""
    ordered = sorted({_parent_key(row): row for row in parents}.items())
    start, inner = 0, None
    if resume:
        saved = resume.get("parent")
        if not isinstance(saved, str):
            raise SourceError(
                f"stream {stream.name}: the saved resume point names no parent ({resume}); "
                "run a full refresh of the stream"
            )
        start = next((i for i, (key, _) in enumerate(ordered) if key >= saved), len(ordered))
        page_state = resume.get("page")
        same = start < len(ordered) and ordered[start][0] == saved
        inner = page_state if same and isinstance(page_state, dict) else None
    if start >= len(ordered):  # no parent rows (left): an empty last page ends the stream
        yield Page(1, [], f"(no {_parent_name(stream)} rows to request)", 200, None, None)
        return

    def walk(i: int) -> Iterator[Page]:
        base = base_request(spec, stream, cursor, ordered[i][1])
        return _walk(spec, stream, api, base, inner if i == start else None)

    columns = stream.parent.fields if stream.parent else {}
    number, warned = 0, False
    for i, pages in _parent_walks(walk, range(start, len(ordered)), concurrency):
        key, row = ordered[i]
        for page in pages:
            number += 1
            records, conflict = _with_parent_columns(page.records, row, columns)
            warning = page.warning
            if conflict and not warned:
                warned, warning = True, _conflict_warning(stream, conflict, columns)
            if page.next_state is not None:
                state: dict[str, JsonValue] | None = {"parent": key, "page": page.next_state}
            elif i + 1 < len(ordered):
                state = {"parent": ordered[i + 1][0], "page": None}
            else:
                state = None
            yield dataclasses.replace(
                page,
                number=number,
                records=records,
                body=records_json(records) if records else b"",
                next_state=state,
                warning=warning,
                parent=row,
            )


def _parent_walks(
    walk: Callable[[int], Iterator[Page]], indexes: range, concurrency: int
) -> Iterator[tuple[int, Iterator[Page]]]:
    """Each parent's walk, in order. Above 1, the next `concurrency` parents' first pages
    are fetched while a walk is read."""
    if concurrency <= 1:
        yield from ((i, walk(i)) for i in indexes)
        return

    def started(i: int) -> tuple[list[Page], Iterator[Page]]:
        pages = walk(i)
        return list(itertools.islice(pages, _BUFFERED_PAGES)), pages

    ahead: Ahead[tuple[list[Page], Iterator[Page]]] = Ahead(concurrency)
    try:
        for at, i in enumerate(indexes):
            ahead.plan([(j, partial(started, j)) for j in indexes[at : at + concurrency]])
            first, rest = ahead.take(i, partial(started, i))
            yield i, itertools.chain(first, rest)
    finally:
        ahead.close()


def child_data_path(stream: Stream) -> str | None:
    """Where a page body holds its records: a child stream's pages are re-encoded as the
    record array (they carry the parent columns), so they have none."""
    return None if stream.parent is not None else stream.data_path


def _parent_key(row: Parent) -> str:
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS).decode()


def _parent_name(stream: Stream) -> str:
    return stream.parent.stream if stream.parent else "parent"


def _with_parent_columns(
    records: list[Record], row: Parent, columns: dict[str, str]
) -> tuple[list[Record], str | None]:
    """`records` with each child column set to its parent value; the first column that a
    record already held with another value, if any."""
    if not columns:
        return records, None
    values = {child: row.get(parent) for child, parent in columns.items()}
    conflict = None
    out = []
    for record in records:
        if conflict is None:
            conflict = next(
                (
                    c
                    for c, v in values.items()
                    if c in record and record[c] != v and record[c] is not None
                ),
                None,
            )
        out.append({**record, **values})
    return out, conflict


def _conflict_warning(stream: Stream, column: str, columns: dict[str, str]) -> str:
    return (
        f"stream {stream.name}: records already had a field '{column}' with values other "
        f"than the parent's '{columns[column]}'; the column holds the parent's value (name "
        "the parent column differently in parent.fields to keep both)"
    )


def extract_records(body: JsonValue, data_path: str | None, where: str = "") -> list[Record]:
    """The records of one response body (see the module docstring for the rules)."""
    value: object = body
    if data_path:
        value = get_path(body, data_path)
        if value is MISSING:
            raise ResponseError(
                f"{where}: data_path '{data_path}' is not in the response ({_shape(body)}); "
                "fix the stream's data_path"
            )
    if value is None:
        return []
    if isinstance(value, dict) and not data_path:
        return [value]
    if not isinstance(value, list):
        at = f"data_path '{data_path}'" if data_path else "the response body"
        raise ResponseError(
            f"{where}: {at} holds {_shape(value)}, not an array of records; point "
            "data_path at the array (or drop data_path when the body is a single record)"
        )
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ResponseError(
                f"{where}: record {index} is {_shape(item)}, not a JSON object; rawquery "
                "needs an array of objects at data_path"
            )
    return cast(list[Record], value)


def records_of(bodies: list[bytes], data_path: str | None) -> list[Record]:
    """The records of page bodies `read_pages` gave records for, parsed again."""
    return [record for body in bodies for record in extract_records(parse_json(body), data_path)]


def records_json(records: list[Record]) -> bytes:
    """A page's records as one JSON array, which `records_of(..., None)` reads back."""
    return json_text(records).encode()


def raise_graphql_errors(body: JsonValue, where: str, redactor: Redactor) -> None:
    """ResponseError with the API's messages when a GraphQL body carries `errors`."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return
    messages = [
        str(err.get("message", err)) if isinstance(err, dict) else str(err)
        for err in errors[:_MAX_GRAPHQL_ERRORS]
    ]
    more = (
        f" (and {len(errors) - _MAX_GRAPHQL_ERRORS} more)"
        if len(errors) > _MAX_GRAPHQL_ERRORS
        else ""
    )
    text = redactor.redact("; ".join(messages))
    raise ResponseError(
        f"{where}: the GraphQL API answered with errors: {text}{more}; fix the stream's "
        "query or variables"
    )


def raise_body_error(body: JsonValue, error_path: str, where: str, redactor: Redactor) -> None:
    """ResponseError quoting the value at `error_path` when it is present and not null,
    false or empty (an API that reports errors in HTTP 200 answers)."""
    value = get_path(body, error_path)
    if value is MISSING or value is None or value is False or value in ("", [], {}):
        return
    text = value if isinstance(value, str) else json_text(value)
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS] + "…"
    raise ResponseError(
        f"{where}: the API answered with an error at '{error_path}': "
        f"{redactor.redact(text)}; not retried (check the credentials and the stream's "
        "request settings)"
    )


def _next_state(paginator: Paginator, redactor: Redactor) -> dict[str, JsonValue] | None:
    """Where to resume after this page, scrubbed of secrets: it is stored and sent."""
    return redactor.scrub_state(paginator.state()) if paginator.has_next_page else None


def _restore(paginator: Paginator, resume: dict[str, JsonValue], stream: Stream) -> None:
    try:
        paginator.restore(resume)
    except ValueError as exc:
        raise SourceError(
            f"stream {stream.name}: the saved resume point does not fit its pagination "
            f"({paginator.redactor.redact_url(str(exc))}); the pagination settings probably "
            "changed since the last sync. Run a full refresh of the stream"
        ) from None


def _same_records(records: list[Record], previous: list[Record] | None) -> bool:
    """Whether a page repeats the one before. Python's `==` answers in C and stops at the
    first difference (usually the first record); only pages it finds equal are compared as
    JSON too, where `1`, `1.0` and `true` differ."""
    if not records or previous is None or records != previous:
        return False
    return _fingerprint(records) == _fingerprint(previous)


def _fingerprint(records: list[Record]) -> bytes:
    try:
        data = orjson.dumps(records, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits, nesting deeper than orjson's limit
        data = json.dumps(records, sort_keys=True).encode()
    return hashlib.blake2b(data).digest()


def _shape(value: object) -> str:
    """A short description of a JSON value's shape (never its contents)."""
    if isinstance(value, dict):
        keys = list(value)[:10]
        more = ", …" if len(value) > 10 else ""
        return f"an object with keys {', '.join(keys)}{more}" if keys else "an empty object"
    if isinstance(value, list):
        return f"an array of {len(value)} items"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"
