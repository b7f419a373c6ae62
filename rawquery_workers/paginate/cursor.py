"""A next-page token, sent back as query `param` or at `body_path` in the JSON body (REST),
or as the GraphQL variable `cursor_variable` (Relay `pageInfo { hasNextPage endCursor }`).

The token is read from the body at `cursor_path`, from the page's last record when
`cursor_path` is "last_record.FIELD" (Stripe's `starting_after`), or from the response
header `cursor_header` (GitLab's `X-Next-Page`). Ends when the token is missing, null or
empty, or when `has_more_path` reads false.
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
        if self.cursor is None:
            return request
        if self.spec.body_path:
            return request.with_body_value(self.spec.body_path, self.cursor)
        return request.with_params({self.spec.param: self.cursor}) if self.spec.param else request

    def _token(self, response: PageResponse) -> object:
        spec = self.spec
        if spec.cursor_header is not None:
            found = response.header(spec.cursor_header)
            return MISSING if found is None else found.strip()
        field = spec.last_record_field
        if field is not None:
            return (
                MISSING if response.last_record is None else get_path(response.last_record, field)
            )
        return get_path(response.body, spec.cursor_path or "")

    def _advance(self, response: PageResponse, records_count: int) -> None:
        token = self._token(response)
        header = self.spec.cursor_header
        where = f"cursor_header '{header}'" if header else f"cursor_path '{self.spec.cursor_path}'"
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
                f"stream {self.stream}: {where} holds a "
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
