"""The next page's URL read from the body at `next_url_path` (Zendesk `next_page`,
HubSpot `paging.next.link`) or from the response header `next_url_header`; absolute or
relative. Ends when it is missing, null or empty."""

from __future__ import annotations

from typing import Unpack

from rawquery_workers.errors import ResponseError
from rawquery_workers.paginate.base import (
    FollowUrlPaginator,
    PageResponse,
    PaginatorOptions,
)
from rawquery_workers.spec.jsonpath import MISSING, get_path
from rawquery_workers.spec.models import NextUrlPagination


class NextUrlPaginator(FollowUrlPaginator):
    def __init__(self, spec: NextUrlPagination, **options: Unpack[PaginatorOptions]) -> None:
        super().__init__(**options)
        self.spec = spec

    def _advance(self, response: PageResponse, records_count: int) -> None:
        if self.spec.next_url_header is not None:
            self._follow(response, response.header(self.spec.next_url_header))
            return
        value = get_path(response.body, self.spec.next_url_path or "")
        if value is MISSING or value is None:
            self._follow(response, None)
        elif isinstance(value, str):
            self._follow(response, value)
        else:
            raise ResponseError(
                f"stream {self.stream}: next_url_path '{self.spec.next_url_path}' holds a "
                f"{type(value).__name__}, not a URL (page {self.pages}); point it at the "
                "URL string (for example 'paging.next.link')"
            )
