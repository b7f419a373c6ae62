"""RFC 8288 (5988) `Link: <https://api.x.com/items?page=2>; rel="next", <...>; rel="last"`.

Several links may share one header (or come in several headers); `rel` may be quoted or
not and may list several relations (`rel="next last"`); targets may be relative.
Ends when no link has the relation `rel` (default "next").
"""

from __future__ import annotations

import re
from typing import Unpack

from rawquery_workers.paginate.base import (
    FollowUrlPaginator,
    PageResponse,
    PaginatorOptions,
)
from rawquery_workers.spec.models import LinkHeaderPagination

_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*(?:[^;,"]|"(?:[^"\\]|\\.)*")*)*)')
_PARAM = re.compile(r';\s*([^\s=;,]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^;,\s]*)))?')


def parse_link_header(value: str) -> list[tuple[str, dict[str, str]]]:
    """Each link as (target, params) with lower-cased param names; first value wins."""
    links = []
    for match in _LINK.finditer(value):
        params: dict[str, str] = {}
        for param in _PARAM.finditer(match.group(2)):
            quoted, bare = param.group(2), param.group(3)
            raw = quoted.replace('\\"', '"') if quoted is not None else (bare or "")
            params.setdefault(param.group(1).lower(), raw)
        links.append((match.group(1).strip(), params))
    return links


def find_link(value: str, rel: str) -> str | None:
    """The target of the first link whose `rel` lists `rel` (case-insensitive)."""
    wanted = rel.lower()
    for target, params in parse_link_header(value):
        if wanted in params.get("rel", "").lower().split():
            return target
    return None


class LinkHeaderPaginator(FollowUrlPaginator):
    def __init__(self, spec: LinkHeaderPagination, **options: Unpack[PaginatorOptions]) -> None:
        super().__init__(**options)
        self.spec = spec

    def _advance(self, response: PageResponse, records_count: int) -> None:
        header = response.header("link")
        self._follow(response, find_link(header, self.spec.rel) if header else None)
