"""Where an offset or page_number walk ends (INTERFACE.md, "Clarifications").

An empty page; `has_more_path` reading false; the total at `total_path` reached; or a page
shorter than the largest page seen so far in the walk. Not a page shorter than the
`page_size` asked for: an API that caps its page size (Jira's `maxResults`) answers every
page short, and stopping there would land a fraction of the records as "succeeded".
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import ClassVar, Unpack

from pydantic import JsonValue

from rawquery_workers.errors import ResponseError
from rawquery_workers.paginate.base import Paginator, PaginatorOptions, RequestSpec
from rawquery_workers.spec.jsonpath import MISSING, get_path
from rawquery_workers.spec.models import OffsetPagination, PageNumberPagination

_FALSE_WORDS = ("false", "0", "no", "")


def truthy(value: object) -> bool:
    """A has-more flag as APIs write it: booleans, 0/1, or words."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)


class PageEnd:
    """The end rule's bookkeeping: the records received so far, the largest page and the
    API's reported total. Part of the paginator's state, so a resumed walk keeps it."""

    def __init__(self, total_path: str | None, has_more_path: str | None, stream: str) -> None:
        self.total_path = total_path
        self.has_more_path = has_more_path
        self.stream = stream
        self.received = 0  # records received in the walk (from its first page)
        self.largest = 0
        self.total: int | None = None

    def ends_after(self, body: JsonValue, count: int) -> bool:
        """Record a page of `count` records; whether it was the last."""
        self.received += count
        short = 0 < count < self.largest
        self.largest = max(self.largest, count)
        if self.total_path is not None:
            self.total = self._total(body)
        if count == 0 or short:
            return True
        if self.has_more_path is not None:
            more = get_path(body, self.has_more_path)
            if more is not MISSING and more is not None and not truthy(more):
                return True
        return self.total is not None and self.received >= self.total

    def shortfall(self) -> str | None:
        """A warning when the API reported more records than the walk received."""
        if self.total is None or self.received >= self.total:
            return None
        return (
            f"stream {self.stream}: the API reported {self.total} records at "
            f"'{self.total_path}' but the walk received {self.received}; records may be "
            "missing (check the pagination settings, or the API changed during the sync)"
        )

    def state(self) -> dict[str, JsonValue]:
        return {"received": self.received, "largest": self.largest, "total": self.total}

    def restore(self, state: Mapping[str, JsonValue]) -> None:
        """Keep what a saved state holds; states saved before these keys existed lack them."""
        received, largest, total = state.get("received"), state.get("largest"), state.get("total")
        self.received = received if isinstance(received, int) else 0
        self.largest = largest if isinstance(largest, int) else 0
        self.total = total if isinstance(total, int) else None

    def _total(self, body: JsonValue) -> int | None:
        value = get_path(body, self.total_path or "")
        if value is MISSING or value is None:
            return self.total  # some APIs send the total on the first page only
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ResponseError(
                f"stream {self.stream}: total_path '{self.total_path}' holds "
                f"{str(value)[:40]!r}, not a record count; point it at the total number of "
                "records"
            )
        return value


class NumberedPaginator(Paginator):
    """Base of offset and page_number: a number sent as `spec.param`, and the end rule.
    `KEY` names the number in the saved state. Their pages can be asked for ahead
    (`ahead`): the position of a later page follows from the page size."""

    KEY: ClassVar[str]

    def __init__(
        self,
        spec: OffsetPagination | PageNumberPagination,
        start: int,
        **options: Unpack[PaginatorOptions],
    ) -> None:
        super().__init__(**options)
        self.position = start
        self.end = PageEnd(spec.total_path, spec.has_more_path, self.stream)
        self._param = spec.param

    def ahead(self, request: RequestSpec, pages: int) -> list[RequestSpec]:
        """Requests for up to `pages` pages after the one `request` (`next_request`) asks
        for, as if every page were as large as the largest so far: none before a page was
        read, none at or beyond a reported total. A guess that turns out wrong (an API
        whose pages shrink) is a request asked for and never read."""
        size = self.end.largest
        if size == 0 or not self.has_next_page:
            return []
        total = self.end.total
        out = []
        for later in range(1, pages + 1):
            if total is not None and self.end.received + size * later >= total:
                break
            out.append(self._at(request, self.position + self._stride(size) * later))
        return out

    def _at_position(self, request: RequestSpec) -> RequestSpec:
        return self._at(request, self.position)

    @abstractmethod
    def _at(self, request: RequestSpec, position: int) -> RequestSpec:
        """`request` rewritten to fetch the page at `position`."""

    @abstractmethod
    def _stride(self, page_size: int) -> int:
        """How far the position moves over a page of `page_size` records."""

    @property
    def end_warning(self) -> str | None:
        return self.end.shortfall()

    @property
    def reported_total(self) -> int | None:
        return self.end.total

    def state(self) -> dict[str, JsonValue]:
        return {self.KEY: self.position, **self.end.state()}

    def restore(self, state: Mapping[str, JsonValue]) -> None:
        value = state.get(self.KEY)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            kind = type(self).__name__
            raise ValueError(f"{kind} state needs a non-negative '{self.KEY}': {state}")
        self.position = value
        self.end.restore(state)
        self.has_next_page = True

    @property
    def next_reference(self) -> str | None:
        return f"{self._param}={self.position}" if self.has_next_page else None
