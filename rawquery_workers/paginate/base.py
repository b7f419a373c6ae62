"""The paginator interface: pure bookkeeping of where the next page is, no I/O.

    paginator.restore(saved_state)            # optional: resume where a sync stopped
    request = paginator.first_request(base)   # the request for the current position
    while request is not None:
        response = <send request>
        paginator.update(PageResponse(...), records_count)   # read where the next page is
        saved_state = paginator.state()       # JSON-able: resume AFTER this page
        request = paginator.next_request(request)            # None: that was the last page
    paginator.ahead(request, n)               # offset, page: the n pages after `request`

`state()` holds the next offset / page / token / URL. A token or URL the API sends twice
raises PaginationLoopError (a real API bug that would otherwise loop forever).

Each spec pagination kind builds its own paginator: `PaginationKind.paginator(**options)`
with the `PaginatorOptions` below (docs/dev/contracts.md: how to add a kind).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypedDict, Unpack
from urllib.parse import urljoin

import httpx
from pydantic import JsonValue

from rawquery_workers.errors import PaginationLoopError
from rawquery_workers.http.redact import Redactor
from rawquery_workers.spec.models import ParamValue, ParamValues

ApiType = Literal["rest", "graphql"]
_SHOWN_CHARS = 40


class PaginatorOptions(TypedDict, total=False):
    """What every paginator is built with (a kind's `paginator(**options)` passes them on)."""

    api_type: ApiType
    stream: str  # for messages
    redactor: Redactor | None  # the connection's: masks secrets in URLs it shows or keeps


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request to send: `params` are merged into `url`'s query (a list value as
    repeated keys); `json` is the body; `headers` the spec's fixed headers."""

    method: str
    url: str
    params: Mapping[str, ParamValues] = field(default_factory=dict)
    json: JsonValue | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def with_params(
        self, values: Mapping[str, ParamValue], drop: tuple[str, ...] = ()
    ) -> RequestSpec:
        params = {k: v for k, v in self.params.items() if k not in drop}
        return dataclasses.replace(self, params={**params, **values})

    def with_body_value(self, path: str, value: JsonValue) -> RequestSpec:
        """The request with the JSON body's dotted `path` set to `value` (objects on the way
        are created; None removes the key)."""
        body = dict(self.json) if isinstance(self.json, dict) else {}
        *parents, last = path.split(".")
        node = body
        for name in parents:
            child = node.get(name)
            node[name] = dict(child) if isinstance(child, dict) else {}
            node = node[name]  # type: ignore[assignment]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
        return dataclasses.replace(self, json=body)

    def with_url(self, url: str) -> RequestSpec:
        """The same request sent to `url`, which carries its own query (params are dropped)."""
        return dataclasses.replace(self, url=url, params={})

    def with_variable(self, name: str, value: JsonValue) -> RequestSpec:
        """A GraphQL request with `variables[name]` set (removed when `value` is None)."""
        body = dict(self.json) if isinstance(self.json, dict) else {}
        raw = body.get("variables")
        variables = dict(raw) if isinstance(raw, dict) else {}
        if value is None:
            variables.pop(name, None)
        else:
            variables[name] = value
        body["variables"] = variables
        return dataclasses.replace(self, json=body)

    @property
    def full_url(self) -> str:
        """`url` with `params` merged into its query string."""
        return str(httpx.URL(self.url).copy_merge_params(dict(self.params)))


@dataclass(frozen=True, slots=True)
class PageResponse:
    """What a paginator may read from a response: the URL requested, headers, parsed body."""

    url: str
    body: JsonValue
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 200
    last_record: JsonValue = None  # the page's last record (None: no records)

    def header(self, name: str) -> str | None:
        if isinstance(self.headers, httpx.Headers):
            found: str | None = self.headers.get(name)
            return found
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


class Paginator(ABC):
    """Base of every pagination type. Subclasses keep their position and implement the
    four abstract methods; the loop guard and `next_request` live here."""

    def __init__(
        self,
        *,
        api_type: ApiType = "rest",
        stream: str = "stream",
        redactor: Redactor | None = None,
    ) -> None:
        self.api_type = api_type
        self.stream = stream
        self.redactor = redactor or Redactor()
        self.has_next_page = True
        self.pages = 0  # pages read so far (updates), for messages
        self._seen: set[str] = set()

    def first_request(self, base: RequestSpec) -> RequestSpec:
        """The request for the current position: the first page, or the restored one."""
        return self._at_position(base)

    def next_request(self, prev: RequestSpec) -> RequestSpec | None:
        """The request for the next page after `update`, or None when there is none."""
        return self._at_position(prev) if self.has_next_page else None

    def ahead(self, request: RequestSpec, pages: int) -> list[RequestSpec]:
        """Requests for up to `pages` pages after the one `request` asks for, to send
        before it is answered; none for a kind whose next page is only known from the
        page before it (tokens, URLs)."""
        return []

    def update(self, response: PageResponse, records_count: int) -> None:
        """Read where the next page is from `response` (which held `records_count` records)."""
        self.pages += 1
        self._advance(response, records_count)

    @abstractmethod
    def _at_position(self, request: RequestSpec) -> RequestSpec:
        """`request` rewritten to fetch the page at the current position."""

    @abstractmethod
    def _advance(self, response: PageResponse, records_count: int) -> None:
        """Move the position past `response`; clear `has_next_page` at the end."""

    @abstractmethod
    def state(self) -> dict[str, JsonValue]:
        """The position of the next page, JSON-able, for `restore`."""

    @abstractmethod
    def restore(self, state: Mapping[str, JsonValue]) -> None:
        """Continue from a `state()` saved earlier."""

    @property
    def next_reference(self) -> str | None:
        """The next page's token/URL/offset as found (unredacted), or None at the end."""
        return None

    @property
    def end_warning(self) -> str | None:
        """After the last page: a warning when the API said it had more than was read."""
        return None

    @property
    def reported_total(self) -> int | None:
        """The record count the API reported (`total_path`), if this kind reads one."""
        return None

    def _remember(self, value: str, what: str) -> None:
        """Record a token/URL; raise PaginationLoopError when it was already seen."""
        if value in self._seen:
            shown = self.redactor.redact_url(value)
            if len(shown) > _SHOWN_CHARS:
                shown = shown[:_SHOWN_CHARS] + "…"
            raise PaginationLoopError(
                f"stream {self.stream}: the API sent {what} '{shown}' twice (page {self.pages});"
                " stopping to avoid an infinite loop"
            )
        self._seen.add(value)


class FollowUrlPaginator(Paginator):
    """Base of paginators that follow a next-page URL found in each response.

    A relative URL is resolved against the URL that was requested. Query parameters whose
    value is a known secret (an API echoing the api key into its links) are removed: the
    auth adds its credentials again on the API's own origin, and nowhere else.
    """

    def __init__(self, **options: Unpack[PaginatorOptions]) -> None:
        super().__init__(**options)
        self.next_url: str | None = None  # None: the first page

    def first_request(self, base: RequestSpec) -> RequestSpec:
        request = super().first_request(base)
        self._seen.add(request.full_url)
        return request

    def _at_position(self, request: RequestSpec) -> RequestSpec:
        return request.with_url(self.next_url) if self.next_url else request

    def _follow(self, response: PageResponse, target: str | None) -> None:
        """Move to `target` (may be relative), or stop when it is None or empty."""
        if not target or not target.strip():
            self.has_next_page = False
            return
        url = urljoin(response.url, target.strip())
        url = self.redactor.strip_params(url, by_name=False)
        self._remember(url, "next-page URL")
        self.next_url = url

    def state(self) -> dict[str, JsonValue]:
        return {"url": self.next_url}

    def restore(self, state: Mapping[str, JsonValue]) -> None:
        url = state.get("url")
        if not isinstance(url, str) or not url:
            raise ValueError(f"{type(self).__name__} state needs a 'url': {state}")
        self.next_url = url
        self._seen.add(url)
        self.has_next_page = True

    @property
    def next_reference(self) -> str | None:
        return self.next_url if self.has_next_page else None
