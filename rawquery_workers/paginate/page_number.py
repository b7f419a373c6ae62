"""`?page=N[&per_page=page_size]`; where the walk ends: paginate/page_end.py."""

from __future__ import annotations

from typing import Unpack

from rawquery_workers.paginate.base import PageResponse, PaginatorOptions, RequestSpec
from rawquery_workers.paginate.page_end import NumberedPaginator
from rawquery_workers.spec.models import PageNumberPagination


class PageNumberPaginator(NumberedPaginator):
    KEY = "page"

    def __init__(self, spec: PageNumberPagination, **options: Unpack[PaginatorOptions]) -> None:
        super().__init__(spec, spec.start_page, **options)
        self.spec = spec

    def _at(self, request: RequestSpec, position: int) -> RequestSpec:
        values: dict[str, int] = {self.spec.param: position}
        if self.spec.page_size_param and self.spec.page_size is not None:
            values[self.spec.page_size_param] = self.spec.page_size
        return request.with_params(values)

    def _stride(self, page_size: int) -> int:
        return 1

    def _advance(self, response: PageResponse, records_count: int) -> None:
        if self.end.ends_after(response.body, records_count):
            self.has_next_page = False
            return
        self.position += 1
