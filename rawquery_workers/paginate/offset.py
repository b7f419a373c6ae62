"""`?offset=N&limit=page_size`; where the walk ends: paginate/page_end.py.

The offset advances by the records actually received, not by page_size: an API that caps
the limit lower (or higher) than asked must not make us skip or repeat records.
"""

from __future__ import annotations

from typing import Unpack

from rawquery_workers.paginate.base import PageResponse, PaginatorOptions, RequestSpec
from rawquery_workers.paginate.page_end import NumberedPaginator
from rawquery_workers.spec.models import OffsetPagination


class OffsetPaginator(NumberedPaginator):
    KEY = "offset"

    def __init__(self, spec: OffsetPagination, **options: Unpack[PaginatorOptions]) -> None:
        super().__init__(spec, spec.start_offset, **options)
        self.spec = spec

    def _at(self, request: RequestSpec, position: int) -> RequestSpec:
        values: dict[str, int] = {self.spec.param: position}
        if self.spec.limit_param:
            values[self.spec.limit_param] = self.spec.page_size
        return request.with_params(values)

    def _stride(self, page_size: int) -> int:
        return page_size

    def _advance(self, response: PageResponse, records_count: int) -> None:
        self.position += records_count
        if self.end.ends_after(response.body, records_count):
            self.has_next_page = False
