"""Offset and page_number walks end where the API's data ends, not where `page_size` says.

The fakes follow the real services' wire formats: Jira Cloud's `GET /rest/api/3/search`
(`startAt`, `maxResults` capped at 100 whatever is asked, `{"startAt", "maxResults",
"total", "issues"}`) and GitHub's page-number listings (`per_page` capped at 100).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Cli, rows, status_streams
from tests.support.api_server import ApiServer, RecordedRequest, Reply

ISSUES = [
    {"id": str(10000 + n), "key": f"PROJ-{n}", "fields": {"summary": f"issue {n}"}}
    for n in range(1, 188)
]


def jira(server: ApiServer, reported_total: int | None = None) -> None:
    def search(request: RecordedRequest) -> Reply:
        start = int(request.params.get("startAt", 0))
        size = min(int(request.params.get("maxResults", 50)), 100)  # Jira's cap
        return Reply(
            {
                "expand": "names,schema",
                "startAt": start,
                "maxResults": size,
                "total": len(ISSUES) if reported_total is None else reported_total,
                "issues": ISSUES[start : start + size],
            }
        )

    server.route("/rest/api/3/search", search)


def spec(server: ApiServer, pagination: dict[str, Any], **stream: Any) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "basic"},
        "streams": [
            {
                "name": "issues",
                "endpoint": "/rest/api/3/search",
                "params": {"jql": "project = PROJ ORDER BY id"},
                "data_path": "issues",
                "primary_key": ["id"],
                "pagination": pagination,
                **stream,
            }
        ],
    }


JIRA_PAGES = {"type": "offset", "param": "startAt", "limit_param": "maxResults", "page_size": 1000}


@pytest.mark.parametrize("total_path", [None, "total"])
def test_a_capped_page_size_lands_every_record(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer, total_path: str | None
) -> None:
    jira(api_server)
    pagination = {**JIRA_PAGES, **({"total_path": total_path} if total_path else {})}
    path = write_spec(spec(api_server, pagination))
    assert (
        cli("connect", "jira", "--spec", str(path), "--auth-user", "u", "--auth-pass", "p").code
        == 0
    )

    done = cli("connections", "sync", "jira")

    assert done.code == 0, done.out + done.err
    assert [r["key"] for r in rows("jira", "issues", order_by="id")] == [i["key"] for i in ISSUES]
    stream = status_streams(cli, "jira")["issues"]
    assert stream["status"] == "succeeded" and stream["rows"] == 187
    assert stream["warnings"] == []
    starts = [int(r.params["startAt"]) for r in api_server.requests_to("/rest/api/3/search")]
    # 87 after a page of 100 is the last page, with or without the total
    assert starts == [0, 100]


def test_a_total_larger_than_what_landed_is_a_warning(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    jira(api_server, reported_total=250)
    path = write_spec(spec(api_server, {**JIRA_PAGES, "total_path": "total"}))
    assert (
        cli("connect", "jira", "--spec", str(path), "--auth-user", "u", "--auth-pass", "p").code
        == 0
    )

    done = cli("connections", "sync", "jira")

    assert done.code == 0, done.out + done.err
    stream = status_streams(cli, "jira")["issues"]
    assert stream["rows"] == 187
    assert any("reported 250 records" in w and "received 187" in w for w in stream["warnings"])


def test_a_capped_per_page_is_followed_to_the_end(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    repos = [{"id": n, "name": f"repo{n}"} for n in range(1, 251)]

    def listing(request: RecordedRequest) -> Reply:
        page, size = int(request.params["page"]), min(int(request.params["per_page"]), 100)
        return Reply(repos[(page - 1) * size : page * size])

    api_server.route("/orgs/acme/repos", listing)
    pagination = {"type": "page_number", "page_size_param": "per_page", "page_size": 500}
    body = spec(api_server, pagination, endpoint="/orgs/acme/repos", params={})
    del body["streams"][0]["data_path"]
    path = write_spec(body)
    assert (
        cli("connect", "gh", "--spec", str(path), "--auth-user", "u", "--auth-pass", "p").code == 0
    )

    done = cli("connections", "sync", "gh")

    assert done.code == 0, done.out + done.err
    assert [r["id"] for r in rows("gh", "issues")] == list(range(1, 251))


def test_has_more_false_ends_an_offset_walk(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    items = [{"id": n} for n in range(1, 8)]

    def listing(request: RecordedRequest) -> Reply:
        offset, limit = int(request.params["offset"]), int(request.params["limit"])
        page = items[offset : offset + limit]
        return Reply({"data": page, "has_more": offset + limit < len(items)})

    api_server.route("/items", listing)
    pagination = {"type": "offset", "page_size": 7, "has_more_path": "has_more"}
    body = spec(api_server, pagination, endpoint="/items", data_path="data", params={})
    path = write_spec(body)
    assert (
        cli("connect", "it", "--spec", str(path), "--auth-user", "u", "--auth-pass", "p").code == 0
    )

    assert cli("connections", "sync", "it").code == 0
    assert [r["id"] for r in rows("it", "issues")] == list(range(1, 8))
    assert len(api_server.requests_to("/items")) == 1  # a full page, but has_more said no
