"""`?offset=N&limit=page_size`: ends at an empty page or one shorter than page_size.

Without `limit_param` the API picks its own page size, so a short page only ends the stream
when the spec states `page_size` explicitly; otherwise only an empty page does.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import JsonValue

from rawquery_workers.paginate.base import ApiType, PageResponse, Paginator, RequestSpec
from rawquery_workers.redact import Redactor
from rawquery_workers.spec.models import OffsetPagination


class OffsetPaginator(Paginator):
    def __init__(
        self,
        spec: OffsetPagination,
        *,
        api_type: ApiType = "rest",
        stream: str = "stream",
        redactor: Redactor | None = None,
    ) -> None:
        super().__init__(api_type=api_type, stream=stream, redactor=redactor)
        self.spec = spec
        self.offset = spec.start_offset
        sized = spec.limit_param is not None or "page_size" in spec.model_fields_set
        self.known_page_size = spec.page_size if sized else None

    def _at_position(self, request: RequestSpec) -> RequestSpec:
        values: dict[str, int] = {self.spec.param: self.offset}
        if self.spec.limit_param:
            values[self.spec.limit_param] = self.spec.page_size
        return request.with_params(values)

    def _advance(self, response: PageResponse, records_count: int) -> None:
        size = self.known_page_size
        if records_count == 0 or (size is not None and records_count < size):
            self.has_next_page = False
            return
        # The records actually received, not page_size: an API that caps the limit
        # higher than asked must not make us skip records.
        self.offset += records_count

    def state(self) -> dict[str, JsonValue]:
        return {"offset": self.offset}

    def restore(self, state: Mapping[str, JsonValue]) -> None:
        offset = state.get("offset")
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset pagination state needs a non-negative 'offset': {state}")
        self.offset = offset
        self.has_next_page = True

    @property
    def next_reference(self) -> str | None:
        return f"{self.spec.param}={self.offset}" if self.has_next_page else None
