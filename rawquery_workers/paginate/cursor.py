"""A token read from the body at `cursor_path`, sent back as query `param` (REST) or as the
GraphQL variable `cursor_variable` (Relay `pageInfo { hasNextPage endCursor }`).

Ends when the token is missing, null or empty, or when `has_more_path` reads false.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Unpack

from pydantic import JsonValue

from rawquery_workers.errors import ResponseError
from rawquery_workers.paginate.base import (
    PageResponse,
    Paginator,
    PaginatorOptions,
    RequestSpec,
)
from rawquery_workers.paginate.page_end import truthy
from rawquery_workers.spec.jsonpath import MISSING, get_path
from rawquery_workers.spec.models import CursorPagination


class CursorPaginator(Paginator):
    def __init__(self, spec: CursorPagination, **options: Unpack[PaginatorOptions]) -> None:
        super().__init__(**options)
        self.spec = spec
        self.cursor: str | int | float | None = None  # None: the first page

    def _at_position(self, request: RequestSpec) -> RequestSpec:
        if self.api_type == "graphql":
            return request.with_variable(self.spec.cursor_variable or "cursor", self.cursor)
        if self.cursor is None or not self.spec.param:
            return request
        return request.with_params({self.spec.param: self.cursor})

    def _advance(self, response: PageResponse, records_count: int) -> None:
        token = get_path(response.body, self.spec.cursor_path)
        if self.spec.has_more_path is not None:
            more = get_path(response.body, self.spec.has_more_path)
            if more is not MISSING and not truthy(more):
                self.has_next_page = False
                return
        if token is MISSING or token is None or token == "":
            self.has_next_page = False
            return
        if not isinstance(token, str | int | float) or isinstance(token, bool):
            raise ResponseError(
                f"stream {self.stream}: cursor_path '{self.spec.cursor_path}' holds a "
                f"{type(token).__name__}, not a token (page {self.pages}); point it at the "
                "next-page token itself"
            )
        self._remember(str(token), "next-page token")
        self.cursor = token

    def state(self) -> dict[str, JsonValue]:
        return {"cursor": self.cursor}

    def restore(self, state: Mapping[str, JsonValue]) -> None:
        cursor = state.get("cursor")
        if not isinstance(cursor, str | int | float) or isinstance(cursor, bool):
            raise ValueError(f"cursor pagination state needs a 'cursor' token: {state}")
        self.cursor = cursor
        self._seen.add(str(cursor))
        self.has_next_page = True

    @property
    def next_reference(self) -> str | None:
        return str(self.cursor) if self.has_next_page and self.cursor is not None else None
