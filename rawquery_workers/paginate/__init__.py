"""Pagination: one paginator class per spec pagination kind, doing no I/O.

`paginator_for(stream.pagination, spec.type)` asks the stream's pagination model for a
fresh paginator (`spec.models.PaginationKind.paginator`); each kind's module here holds
one paginator class, on the interface of `paginate/base.py`. No pagination: a single page.

May import: errors, spec, http (redaction, the client's parse helpers).
Never runner, distributed, cli.
"""

from __future__ import annotations

from rawquery_workers.http.redact import Redactor
from rawquery_workers.paginate.base import (
    ApiType,
    FollowUrlPaginator,
    PageResponse,
    Paginator,
    PaginatorOptions,
    RequestSpec,
)
from rawquery_workers.paginate.single import SinglePagePaginator
from rawquery_workers.spec.models import PaginationKind

__all__ = [
    "ApiType",
    "FollowUrlPaginator",
    "PageResponse",
    "Paginator",
    "PaginatorOptions",
    "RequestSpec",
    "SinglePagePaginator",
    "paginator_for",
]


def paginator_for(
    pagination: PaginationKind | None,
    api_type: ApiType = "rest",
    *,
    stream: str = "stream",
    redactor: Redactor | None = None,
) -> Paginator:
    """A fresh paginator for a stream's `pagination` (None: a single page)."""
    if pagination is None:
        return SinglePagePaginator(api_type=api_type, stream=stream, redactor=redactor)
    return pagination.paginator(api_type=api_type, stream=stream, redactor=redactor)
