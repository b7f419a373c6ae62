"""`?page=N[&per_page=page_size]`: ends at an empty page, or a short one when page_size is known."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import JsonValue

from rawquery_workers.paginate.base import ApiType, PageResponse, Paginator, RequestSpec
from rawquery_workers.redact import Redactor
from rawquery_workers.spec.models import PageNumberPagination


class PageNumberPaginator(Paginator):
    def __init__(
        self,
        spec: PageNumberPagination,
        *,
        api_type: ApiType = "rest",
        stream: str = "stream",
        redactor: Redactor | None = None,
    ) -> None:
        super().__init__(api_type=api_type, stream=stream, redactor=redactor)
        self.spec = spec
        self.page = spec.start_page

    def _at_position(self, request: RequestSpec) -> RequestSpec:
        values: dict[str, int] = {self.spec.param: self.page}
        if self.spec.page_size_param and self.spec.page_size is not None:
            values[self.spec.page_size_param] = self.spec.page_size
        return request.with_params(values)

    def _advance(self, response: PageResponse, records_count: int) -> None:
        size = self.spec.page_size
        if records_count == 0 or (size is not None and records_count < size):
            self.has_next_page = False
            return
        self.page += 1

    def state(self) -> dict[str, JsonValue]:
        return {"page": self.page}

    def restore(self, state: Mapping[str, JsonValue]) -> None:
        page = state.get("page")
        if not isinstance(page, int) or page < 0:
            raise ValueError(f"page_number pagination state needs a non-negative 'page': {state}")
        self.page = page
        self.has_next_page = True

    @property
    def next_reference(self) -> str | None:
        return f"{self.spec.param}={self.page}" if self.has_next_page else None
