"""No pagination: the endpoint answers everything in one response."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import JsonValue

from rawquery_workers.http.redact import Redactor
from rawquery_workers.paginate.base import ApiType, PageResponse, Paginator, RequestSpec


class SinglePagePaginator(Paginator):
    """One request; there is never a next page (and nothing to resume)."""

    def __init__(
        self,
        spec: None = None,
        *,
        api_type: ApiType = "rest",
        stream: str = "stream",
        redactor: Redactor | None = None,
    ) -> None:
        super().__init__(api_type=api_type, stream=stream, redactor=redactor)

    def _at_position(self, request: RequestSpec) -> RequestSpec:
        return request

    def _advance(self, response: PageResponse, records_count: int) -> None:
        self.has_next_page = False

    def state(self) -> dict[str, JsonValue]:
        return {}

    def restore(self, state: Mapping[str, JsonValue]) -> None:
        self.has_next_page = True
