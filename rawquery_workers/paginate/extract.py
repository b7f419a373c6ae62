"""Reading one stream's pages from its API: build the request, send it, find the records.

REST: `stream.method` (GET) to base_url + endpoint with the stream's `params`. GraphQL:
POST to base_url + (endpoint or "/graphql") with `{"query", "variables"}`; a 200 answer
carrying a non-empty `errors` array fails the stream with the API's messages.

`{{cursor}}` in a param (or a top-level GraphQL variable) is replaced by the saved cursor;
on a first sync (no cursor) every param or variable that uses `{{cursor}}` is left out,
since it cannot be rendered. An absolute endpoint must be on base_url's origin.

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

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urljoin

import orjson
from pydantic import JsonValue

from rawquery_workers.errors import PaginationLoopError, ResponseError, SourceError, SpecError
from rawquery_workers.http.client import ApiClient, join_url, parse_json
from rawquery_workers.http.redact import Redactor
from rawquery_workers.paginate import PageResponse, Paginator, RequestSpec, paginator_for
from rawquery_workers.spec.jsonpath import MISSING, get_path
from rawquery_workers.spec.models import ParamValue, Spec, Stream
from rawquery_workers.spec.origin import Origin, same_origin
from rawquery_workers.spec.templating import placeholders, render
from rawquery_workers.transform.parse import json_text

Record = dict[str, JsonValue]
_MAX_GRAPHQL_ERRORS = 5


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


def read_pages(
    spec: Spec,
    stream: Stream,
    api: ApiClient,
    *,
    cursor: str | None = None,
    resume: dict[str, JsonValue] | None = None,
    max_pages: int | None = None,
) -> Iterator[Page]:
    """The stream's pages in order, from the first page or from `resume`, at most
    `max_pages` of them. Raises SourceError kinds (and SpecError for a bad endpoint)."""
    paginator = paginator_for(
        stream.pagination, spec.type, stream=stream.name, redactor=api.redactor
    )
    if resume:
        _restore(paginator, resume, stream)
    request: RequestSpec | None = paginator.first_request(base_request(spec, stream, cursor))
    previous: list[Record] | None = None
    number = 0
    while request is not None:
        number += 1
        try:
            response = api.request(
                request.method, request.url, params=request.params, json=request.json
            )
        except SourceError as exc:  # say which stream and page (the URL is already in it)
            exc.args = (f"stream {stream.name}, page {number}: {exc}", *exc.args[1:])
            raise
        where = f"stream {stream.name}, page {number} ({response.redacted_url})"
        if spec.type == "graphql":
            raise_graphql_errors(response.json, where, api.redactor)
        records = extract_records(response.json, stream.data_path, where)
        page = PageResponse(response.url, response.json, response.headers, response.status)
        paginator.update(page, len(records))
        if paginator.has_next_page and _same_records(records, previous):
            raise PaginationLoopError(
                f"{where}: the API returned exactly the same {len(records)} records as the "
                "page before; it seems to ignore the pagination parameters; stopping to "
                "avoid an infinite loop (check the stream's pagination settings)"
            )
        previous = records
        reference = paginator.next_reference
        yield Page(
            number=number,
            records=records,
            url=response.redacted_url,
            status=response.status,
            next_state=_next_state(paginator, api.redactor),
            raw_next=api.redactor.redact_url(reference) if reference is not None else None,
            body=response.content,
            warning=None if paginator.has_next_page else paginator.end_warning,
        )
        if max_pages is not None and number >= max_pages:
            return
        request = paginator.next_request(request)


def base_request(spec: Spec, stream: Stream, cursor: str | None = None) -> RequestSpec:
    """The stream's first-page request before pagination adds anything."""
    names = {"cursor": cursor} if cursor is not None else {}
    if spec.type == "graphql":
        url = endpoint_url(spec.base_url, stream.endpoint or "/graphql", stream.name)
        variables = _rendered(stream.variables, names, f"stream {stream.name} variables")
        return RequestSpec("POST", url, {}, {"query": stream.query, "variables": variables})
    url = endpoint_url(spec.base_url, stream.endpoint or "", stream.name)
    params = _rendered(stream.params, names, f"stream {stream.name} params")
    return RequestSpec(stream.method, url, cast(dict[str, ParamValue], params))


def endpoint_url(base_url: str, endpoint: str, stream_name: str = "stream") -> str:
    """base_url + endpoint; an absolute endpoint is allowed only on base_url's origin."""
    if "://" not in endpoint and not endpoint.startswith("//"):
        return join_url(base_url, endpoint)
    url = urljoin(base_url, endpoint)
    if not same_origin(url, base_url):
        raise SpecError(
            f"stream {stream_name}: endpoint '{Redactor().redact_url(url)}' is not on "
            f"base_url's origin ({Origin.of(base_url)}); use a path relative to base_url "
            "(credentials are only ever sent to base_url's origin)"
        )
    return url


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


def _rendered(
    values: Mapping[str, JsonValue], names: Mapping[str, str], where: str
) -> dict[str, JsonValue]:
    """`values` with `{{cursor}}` rendered; entries using it are dropped without a cursor."""
    out: dict[str, JsonValue] = {}
    for key, value in values.items():
        if "cursor" in placeholders(value) and "cursor" not in names:
            continue
        out[key] = render(value, names, f"{where}.{key}")
    return out


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
