"""Notion: `POST /v1/databases/{database_id}/query` (developers.notion.com/reference/
post-database-query, /reference/pagination, /reference/post-database-query-filter#timestamp,
/reference/status-codes, /reference/versioning).

Followed from the docs:
- a JSON body with optional `filter`, `sorts`, `start_cursor`, `page_size` (at most 100,
  default 100); any other body key is a `validation_error`;
- the answer `{"object": "list", "results": [...], "next_cursor": ..., "has_more": ...,
  "type": "page_or_database", "page_or_database": {}}`; `next_cursor` is null on the last
  page; a `start_cursor` that is not one Notion issued is a `validation_error`;
- the `Notion-Version` header is required: without it the answer is 400
  `{"object": "error", "status": 400, "code": "missing_version", "message": ...}`; an
  unknown version is a 400 `validation_error`;
- a wrong bearer token is a 401 `unauthorized` in the same error shape;
- timestamp filters: `{"timestamp": "last_edited_time", "last_edited_time": {"on_or_after":
  "2024-01-01T00:00:00Z"}}` (also `after`, `before`, `on_or_before`, `equals`, and
  `created_time`), compound `and` / `or`; the value must be an ISO 8601 date, otherwise a
  `validation_error`;
- `sorts` by `timestamp` (`created_time`, `last_edited_time`) ascending or descending;
- `last_edited_time` is rounded down to the minute (a documented quirk of page objects);
- archived pages (`archived` / `in_trash`) are not returned by a query.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.services import ServiceFake, parse_iso

VERSIONS = ("2021-05-13", "2021-08-16", "2022-02-22", "2022-06-28")
BODY_KEYS = {"filter", "sorts", "start_cursor", "page_size", "filter_properties", "archived"}
_OPERATORS = {
    "equals": lambda a, b: a == b,
    "before": lambda a, b: a < b,
    "after": lambda a, b: a > b,
    "on_or_before": lambda a, b: a <= b,
    "on_or_after": lambda a, b: a >= b,
}


class BadRequest(Exception):
    pass


def iso_ms(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


class Notion(ServiceFake):
    prefix = "/v1/"

    def __init__(
        self,
        server: ApiServer,
        token: str = "secret_FakeNotionIntegrationToken0123456789abc",
        pages: int = 330,
        seed: int = 3,
    ) -> None:
        super().__init__(server, seed=seed, start=datetime(2024, 3, 1, 9, 0, tzinfo=UTC))
        self.token = token
        self.database_id = str(uuid.UUID(int=self.random.getrandbits(128), version=4))
        self.bot = str(uuid.UUID(int=self.random.getrandbits(128), version=4))
        self.all_pages: list[dict[str, Any]] = []
        for _ in range(pages):
            self.add_page()
        server.route(self.query_path, self._query, methods=("POST",))

    @property
    def query_path(self) -> str:
        return f"/v1/databases/{self.database_id}/query"

    @property
    def pages(self) -> list[dict[str, Any]]:
        """The ground truth: the pages a query returns (archived ones are not)."""
        return [p for p in self.all_pages if not p["archived"]]

    # --- data -----------------------------------------------------------------------------

    def _edited(self) -> str:
        moment = self.tick(self.random.choice([5, 20, 40, 90, 600]))
        return iso_ms(moment.replace(second=0, microsecond=0))  # rounded to the minute

    def add_page(self) -> dict[str, Any]:
        rng = self.random
        n = len(self.all_pages) + 1
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        created = iso_ms(self.tick(rng.randint(1, 30)))
        title = f"Task {n}"
        page = {
            "object": "page",
            "id": pid,
            "created_time": created,
            "last_edited_time": max(created[:17] + "00.000Z", self._edited()),
            "created_by": {"object": "user", "id": self.bot},
            "last_edited_by": {"object": "user", "id": self.bot},
            "cover": None,
            "icon": None,
            "parent": {"type": "database_id", "database_id": self.database_id},
            "archived": False,
            "in_trash": False,
            "properties": {
                "Name": {
                    "id": "title",
                    "type": "title",
                    "title": [{"type": "text", "plain_text": title, "text": {"content": title}}],
                },
                "Status": {
                    "id": "%3DmJq",
                    "type": "select",
                    "select": {"name": rng.choice(["Todo", "Doing", "Done"]), "color": "blue"},
                },
                "Points": {"id": "p%7Bq", "type": "number", "number": rng.choice([1, 2, 3, 5])},
            },
            "url": f"https://www.notion.so/Task-{n}-{pid.replace('-', '')}",
            "public_url": None,
        }
        self.all_pages.append(page)
        return page

    def mutate(self) -> None:
        """Some pages are edited (their last_edited_time moves on), new ones are added."""
        self.tick(3600 * 5)
        for page in self.random.sample(self.pages, 40):
            page["properties"]["Status"]["select"]["name"] = "Done"
            page["properties"]["Points"]["number"] = 8
            page["last_edited_time"] = self._edited()
        for _ in range(25):
            self.add_page()

    # --- the API --------------------------------------------------------------------------

    def _error(self, status: int, code: str, message: str) -> Reply:
        body = {"object": "error", "status": status, "code": code, "message": message}
        body["request_id"] = str(uuid.UUID(int=self.random.getrandbits(128), version=4))
        return Reply(body, status)

    def _query(self, request: RecordedRequest) -> Reply:
        if request.header("authorization") != f"Bearer {self.token}":
            return self._error(401, "unauthorized", "API token is invalid.")
        version = request.header("notion-version")
        if version is None:
            return self._error(
                400,
                "missing_version",
                "Notion-Version header failed validation: Notion-Version header should be "
                "defined, instead was `undefined`.",
            )
        if version not in VERSIONS:
            return self._error(
                400,
                "validation_error",
                f"Notion-Version header failed validation: {version} is not a valid version.",
            )
        try:
            body = orjson.loads(request.body) if request.body else {}
        except orjson.JSONDecodeError:
            return self._error(400, "invalid_json", "Error parsing JSON body.")
        try:
            return self._answer(body)
        except BadRequest as exc:
            return self._error(400, "validation_error", f"body failed validation: {exc}")

    def _answer(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            raise BadRequest("body should be an object")
        for key in body:
            if key not in BODY_KEYS:
                raise BadRequest(f"body.{key} should be not present, instead was present.")
        size = body.get("page_size", 100)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100:
            raise BadRequest(f"body.page_size should be ≤ `100`, instead was `{size}`.")
        found = [p for p in self.pages if _matches(p, body.get("filter"), "body.filter")]
        for sort in reversed(body.get("sorts") or []):
            if not isinstance(sort, dict) or sort.get("timestamp") not in (
                "created_time",
                "last_edited_time",
            ):
                raise BadRequest("body.sorts[0].timestamp should be a timestamp sort.")
            descending = sort.get("direction", "ascending") == "descending"
            found.sort(key=lambda p, s=sort: p[s["timestamp"]], reverse=descending)
        start = 0
        if (cursor := body.get("start_cursor")) is not None:
            ids = [p["id"] for p in found]
            if not isinstance(cursor, str) or cursor not in ids:
                raise BadRequest(f"body.start_cursor should be a valid cursor, got `{cursor}`.")
            start = ids.index(cursor)
        page = found[start : start + size]
        end = start + len(page)
        return Reply(
            {
                "object": "list",
                "results": page,
                "next_cursor": found[end]["id"] if end < len(found) else None,
                "has_more": end < len(found),
                "type": "page_or_database",
                "page_or_database": {},
            }
        )


def _matches(page: dict[str, Any], condition: Any, where: str) -> bool:
    if condition is None:
        return True
    if not isinstance(condition, dict):
        raise BadRequest(f"{where} should be an object, instead was `{condition!r}`.")
    if "and" in condition or "or" in condition:
        parts = condition.get("and", condition.get("or"))
        if not isinstance(parts, list):
            raise BadRequest(f"{where}.and should be an array.")
        results = [_matches(page, c, f"{where}.and[{i}]") for i, c in enumerate(parts)]
        return all(results) if "and" in condition else any(results)
    field = condition.get("timestamp")
    if field not in ("created_time", "last_edited_time"):
        raise BadRequest(f"{where}.timestamp should be `created_time` or `last_edited_time`.")
    test = condition.get(field)
    if not isinstance(test, dict) or len(test) != 1:
        raise BadRequest(f"{where}.{field} should be an object with one operator.")
    [(operator, value)] = test.items()
    if operator not in _OPERATORS:
        raise BadRequest(f"{where}.{field}.{operator} is not a date filter operator.")
    moment = parse_iso(value) if isinstance(value, str) else None
    if moment is None:
        raise BadRequest(
            f"{where}.{field}.{operator} should be a valid ISO 8601 date string, instead was "
            f"`{value!r}`."
        )
    recorded = parse_iso(page[field])
    assert recorded is not None
    return bool(_OPERATORS[operator](recorded, moment))
