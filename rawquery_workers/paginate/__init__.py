"""Pagination: one paginator class per spec pagination kind, doing no I/O.

`paginator_for(spec.pagination, spec.type)` picks the class from the spec model's type.
A new pagination kind = one module here + one spec model + one row in `_PAGINATORS`.
"""

from __future__ import annotations

from collections.abc import Callable

from rawquery_workers.paginate.base import (
    ApiType,
    FollowUrlPaginator,
    PageResponse,
    Paginator,
    RequestSpec,
)
from rawquery_workers.paginate.cursor import CursorPaginator
from rawquery_workers.paginate.link_header import LinkHeaderPaginator, parse_link_header
from rawquery_workers.paginate.next_url import NextUrlPaginator
from rawquery_workers.paginate.offset import OffsetPaginator
from rawquery_workers.paginate.page_number import PageNumberPaginator
from rawquery_workers.paginate.single import SinglePagePaginator
from rawquery_workers.redact import Redactor
from rawquery_workers.spec.models import (
    CursorPagination,
    LinkHeaderPagination,
    NextUrlPagination,
    OffsetPagination,
    PageNumberPagination,
    Pagination,
)

__all__ = [
    "ApiType",
    "CursorPaginator",
    "FollowUrlPaginator",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "OffsetPaginator",
    "PageNumberPaginator",
    "PageResponse",
    "Paginator",
    "RequestSpec",
    "SinglePagePaginator",
    "paginator_for",
    "parse_link_header",
]

_PAGINATORS: dict[type, Callable[..., Paginator]] = {
    OffsetPagination: OffsetPaginator,
    CursorPagination: CursorPaginator,
    PageNumberPagination: PageNumberPaginator,
    LinkHeaderPagination: LinkHeaderPaginator,
    NextUrlPagination: NextUrlPaginator,
}


def paginator_for(
    pagination: Pagination | None,
    api_type: ApiType = "rest",
    *,
    stream: str = "stream",
    redactor: Redactor | None = None,
) -> Paginator:
    """A fresh paginator for a stream's `pagination` (None: a single page)."""
    if pagination is None:
        return SinglePagePaginator(api_type=api_type, stream=stream, redactor=redactor)
    make = _PAGINATORS[type(pagination)]
    return make(pagination, api_type=api_type, stream=stream, redactor=redactor)
