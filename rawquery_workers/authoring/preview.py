"""`rq spec preview`: a test read of a spec that writes nothing.

For each chosen stream it reads up to N pages with the real machinery of a sync (auth,
rate limit, retries, pagination, extraction, transform) and reports:
- every request: method, redacted URL, status, attempt, seconds, rate-limit wait, retries;
- every page: its records count, the next-page token or URL found (and where: a header,
  the last record), the body sent, the total the API reported, and for a child request the
  parent values used (from the parent stream's preview rows: a parent is previewed first);
- a sample of the records as extracted and of each table's rows after every
  transformation (flatten, expand, include, types, rename), parent and child tables;
- the Iceberg schema each table would be created with, and the warnings a sync would raise;
- hints (`rawquery_workers.authoring.hints`) with the spec fragment to add.

Nothing is written: no registry, no catalog, no warehouse, no credentials stored. An OAuth2
provider that rotates refresh tokens may invalidate the one given (a warning says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pyarrow as pa

from rawquery_workers.auth import build_auth
from rawquery_workers.auth.base import CredentialsHook
from rawquery_workers.authoring.hints import (
    Hint,
    data_path_hint,
    error_path_hint,
    pagination_hints,
    type_hints,
)
from rawquery_workers.errors import (
    AuthError,
    ConfigError,
    SourceError,
    SpecError,
    TransformError,
)
from rawquery_workers.http.client import ApiClient, ApiResponse, Event, RetryPolicy, build_client
from rawquery_workers.http.ratelimit import local_limiter_for
from rawquery_workers.http.redact import Redactor
from rawquery_workers.paginate.extract import Page, Record, read_pages
from rawquery_workers.settings import get_settings
from rawquery_workers.sink.schema import batch_schema, iceberg_type
from rawquery_workers.spec.credentials import Credentials
from rawquery_workers.spec.jsonpath import get_path
from rawquery_workers.spec.models import CursorPagination, NextUrlPagination, Spec, Stream
from rawquery_workers.transform import KEY, REJECTED, SYNCED_AT, TableBatch, transform_records

DEFAULT_PAGES = 2
DEFAULT_SAMPLE = 3
_LIMITER_KEY = "rq-preview"
_ROTATED = (
    "the OAuth2 provider issued a new refresh token during the preview and preview stores "
    "nothing: if this provider rotates refresh tokens, the one given may no longer work"
)


@dataclass(frozen=True, slots=True)
class PageView:
    number: int
    url: str  # redacted
    status: int
    records: int
    next: str | None  # the next-page token or URL found (redacted), None on the last page
    next_from: str | None = None  # where it was read when not the body ("header X-Next-Page")
    body: Any = None  # the JSON body sent (redacted), None when there was none
    parent: dict[str, Any] | None = None  # a child request's parent values
    total: int | None = None  # the record count the API reported (total_path)


@dataclass(frozen=True, slots=True)
class ColumnView:
    name: str
    type: str  # the Iceberg type, e.g. long, timestamptz
    note: str | None = None


@dataclass(frozen=True, slots=True)
class TableView:
    name: str
    rows: int
    columns: list[ColumnView]
    sample: list[dict[str, Any]]
    keys: tuple[str, ...] = ()
    parent: str | None = None
    parent_key: str | None = None


@dataclass(frozen=True, slots=True)
class StreamPreview:
    name: str
    requests: list[Event] = field(default_factory=list)
    pages: list[PageView] = field(default_factory=list)
    records: int = 0
    sample: list[Record] = field(default_factory=list)
    tables: list[TableView] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hints: list[Hint] = field(default_factory=list)
    error: str | None = None

    @property
    def more_pages(self) -> bool:
        """True when the read stopped at the page limit with a next page still announced."""
        return bool(self.pages) and self.pages[-1].next is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "requests": list(self.requests),
            "pages": [vars_of(p) for p in self.pages],
            "more_pages": self.more_pages,
            "records": self.records,
            "sample": self.sample,
            "tables": [
                {**vars_of(t), "columns": [vars_of(c) for c in t.columns], "keys": list(t.keys)}
                for t in self.tables
            ],
            "warnings": self.warnings,
            "hints": [h.as_dict() for h in self.hints],
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Preview:
    source: str | None
    base_url: str
    max_pages: int
    streams: list[StreamPreview]

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.streams)

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.source,
            "base_url": self.base_url,
            "max_pages": self.max_pages,
            "ok": self.ok,
            "streams": [s.as_dict() for s in self.streams],
        }


def vars_of(obj: object) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}  # type: ignore[attr-defined]


class _RecordingApiClient(ApiClient):
    """An ApiClient that keeps the responses it returned, for the hints."""

    responses: list[ApiResponse]

    def request(self, method: str, url: str, **kwargs: Any) -> ApiResponse:
        response = super().request(method, url, **kwargs)
        self.responses.append(response)
        return response


def preview_spec(
    spec: Spec,
    credentials: Credentials,
    *,
    streams: Sequence[str] = (),
    max_pages: int = DEFAULT_PAGES,
    sample: int = DEFAULT_SAMPLE,
    source: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Preview:
    """Read up to `max_pages` pages of each chosen stream (all when `streams` is empty).

    Raises ConfigError for an unknown stream name, a page limit below 1, or credentials
    lacking what the spec's auth needs; errors while reading a stream are reported in its
    StreamPreview instead.
    """
    chosen = _choose(spec, streams)
    if max_pages < 1:
        raise ConfigError(f"--pages must be at least 1, got {max_pages}")
    redactor = Redactor.for_auth(spec.auth, credentials)
    notes: list[str] = []
    with build_client(transport=transport) as client:
        issued = lambda new: _issued(new, credentials, redactor, notes)  # noqa: E731
        auth = _auth(spec, credentials, client, issued, redactor)
        events: list[Event] = []
        api = _RecordingApiClient(
            client,
            spec.base_url,
            auth,
            local_limiter_for(_LIMITER_KEY, spec.retry),
            limiter_key=_LIMITER_KEY,
            policy=RetryPolicy.from_spec(spec.retry),
            redactor=redactor,
            on_event=events.append,
            allow_private_targets=get_settings().allow_private_targets,
        )
        results = []
        parent_rows: dict[str, list[dict[str, Any]]] = {}
        for stream in chosen:
            events.clear()
            api.responses = []
            result = _preview_stream(spec, stream, api, max_pages, sample, parent_rows)
            result.requests.extend(events)
            result.warnings.extend(notes)
            results.append(result)
            notes.clear()
    return Preview(source, spec.base_url, max_pages, results)


def _choose(spec: Spec, names: Sequence[str]) -> list[Stream]:
    known = [s.name for s in spec.streams]
    if unknown := [n for n in names if n not in known]:
        raise ConfigError(
            f"the spec has no stream {', '.join(map(repr, unknown))}; "
            f"its streams are: {', '.join(known)}"
        )
    return [spec.stream(name) for name in spec.with_parents(list(names) or known)]


def _auth(
    spec: Spec,
    credentials: Credentials,
    client: httpx.Client,
    on_credentials: CredentialsHook,
    redactor: Redactor,
) -> httpx.Auth | None:
    try:
        return build_auth(
            spec.auth,
            credentials,
            base_url=spec.base_url,
            on_credentials=on_credentials,
            token_client=client,
            redactor=redactor,
        )
    except AuthError as exc:
        needed = str(exc).split(";", 1)[0].removeprefix("connection needs ")
        raise ConfigError(f"the spec's auth needs {needed}: pass it to `rq spec preview`") from None


def _issued(new: Credentials, given: Credentials, redactor: Redactor, notes: list[str]) -> None:
    redactor.add_secrets(*new.secrets())
    if new.refresh_token and new.refresh_token != given.refresh_token and _ROTATED not in notes:
        notes.append(_ROTATED)


def _preview_stream(
    spec: Spec,
    stream: Stream,
    api: _RecordingApiClient,
    max_pages: int,
    sample: int,
    parent_rows: dict[str, list[dict[str, Any]]],
) -> StreamPreview:
    """Preview one stream; its table's rows join `parent_rows` for its child streams."""
    pages: list[Page] = []
    error: str | None = None
    parents = None
    if stream.parent is not None:  # the columns a sync reads from the parent table
        columns = stream.parent_columns
        rows = parent_rows.get(stream.parent.stream, [])
        parents = [{c: row[c] for c in columns if c in row} for row in rows]
    try:
        for page in read_pages(spec, stream, api, max_pages=max_pages, parents=parents):
            pages.append(page)
    except (SourceError, SpecError) as exc:
        error = str(exc)
    records = [r for page in pages for r in page.records]
    views = [_page_view(stream, p, api.redactor) for p in pages]
    hints = _response_hints(spec, stream, api, pages)
    tables: list[TableView] = []
    warnings: list[str] = []
    if error is None:
        try:
            result = transform_records(stream, records)
        except TransformError as exc:
            error = str(exc)
        else:
            warnings = list(result.warnings)
            tables = [_table_view(stream, b, sample) for b in result.tables]
            main = next((b for b in result.tables if b.parent is None), None)
            if main is not None:
                parent_rows[stream.name] = _json_rows(main.data.to_pylist())
            if found := _type_hint(stream, result.tables):
                hints.append(found)
    hints = [_redacted(h, api.redactor) for h in hints]
    return StreamPreview(
        name=stream.name,
        pages=views,
        records=len(records),
        sample=records[:sample],
        tables=tables,
        warnings=warnings,
        hints=hints,
        error=error,
    )


def _page_view(stream: Stream, page: Page, redactor: Redactor) -> PageView:
    body = None
    if page.sent_body is not None:
        text = redactor.redact(orjson.dumps(page.sent_body).decode())
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:  # a mask landed inside an escape: show the text
            body = text
    return PageView(
        page.number,
        page.url,
        page.status,
        len(page.records),
        page.raw_next,
        next_from=_token_source(stream) if page.raw_next else None,
        body=body,
        parent=dict(page.parent) if page.parent is not None else None,
        total=page.total,
    )


def _token_source(stream: Stream) -> str | None:
    pag = stream.pagination
    if isinstance(pag, CursorPagination):
        if pag.cursor_header:
            return f"header {pag.cursor_header}"
        if pag.last_record_field:
            return f"the last record's {pag.last_record_field}"
    if isinstance(pag, NextUrlPagination) and pag.next_url_header:
        return f"header {pag.next_url_header}"
    return None


def _json_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as a sync's child requests read them from the parent table: JSON-able."""
    return [orjson.loads(orjson.dumps(row, default=str)) for row in rows]


def _response_hints(
    spec: Spec, stream: Stream, api: _RecordingApiClient, pages: list[Page]
) -> list[Hint]:
    if not api.responses:
        return []
    first = api.responses[0]
    count = len(pages[0].records) if pages else 0
    path_hint = data_path_hint(stream, first.json)
    if path_hint is not None:  # count the records where they really are
        records = get_path(first.json, str(path_hint.fragment["data_path"]))
        count = len(records) if isinstance(records, list) else count
    hints = pagination_hints(stream, first.json, first.headers, count, spec.type)
    error_hint = error_path_hint(first.json, first.status, spec.error_path_for(stream))
    return [h for h in (error_hint, *hints, path_hint) if h is not None]


def _redacted(hint: Hint, redactor: Redactor) -> Hint:
    return Hint(hint.kind, redactor.redact(hint.message), hint.fragment)


# --- tables --------------------------------------------------------------------------------


def _table_view(stream: Stream, batch: TableBatch, sample: int) -> TableView:
    schema, null_only = batch_schema(batch, f"table {batch.name}")
    columns = [
        ColumnView(f.name, str(iceberg_type(f.type)), _column_note(batch, f.name, null_only))
        for f in schema
    ]
    rows = batch.data.slice(0, sample).to_pylist()
    return TableView(
        name=batch.name,
        rows=batch.data.num_rows,
        columns=columns,
        sample=rows,
        keys=batch.keys,
        parent=batch.parent,
        parent_key=batch.parent_key,
    )


def _column_note(batch: TableBatch, name: str, null_only: frozenset[str]) -> str | None:
    if name in batch.keys:
        return "primary key"
    if name == batch.parent_key:
        return f"parent key (-> {batch.parent})"
    if name == SYNCED_AT:
        return "added by rawquery: when the sync started"
    if name == REJECTED:
        return "added by rawquery: values that could not be read as their column's type"
    if name == KEY:
        return "added by rawquery: the primary key as one value"
    if name in null_only:
        return "only nulls so far: stored as string until real values arrive"
    return None


def _type_hint(stream: Stream, batches: list[TableBatch]) -> Hint | None:
    """Timestamp-looking untyped columns across the stream's tables, by their spec names."""
    columns: dict[str, list[object]] = {}
    declared = set(stream.types)
    for batch in batches:
        scope = batch.name[len(stream.name) + 1 :] if batch.parent else None
        original = _original_names(stream, scope)
        if scope:
            declared |= {f"{scope}.{n}" for n in stream.types if "." not in n}
        for f in batch.data.schema:
            if not (pa.types.is_string(f.type) or pa.types.is_int64(f.type)):
                continue
            if f.name in (batch.parent_key, KEY, REJECTED):
                continue
            name = original.get(f.name, f.name)
            columns[f"{scope}.{name}" if scope else name] = batch.data.column(f.name).to_pylist()
    return type_hints(columns, declared)


def _original_names(stream: Stream, scope: str | None) -> Mapping[str, str]:
    """Final column name -> the name before `fields.rename`, for one table."""
    rename = stream.fields.rename if stream.fields else {}
    out: dict[str, str] = {}
    for old, new in rename.items():
        head, dot, tail = old.partition(".")
        if scope is None and not dot:
            out[new] = old
        elif scope is not None and dot and head == scope:
            out[new] = tail
    return out
