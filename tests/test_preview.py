"""`rq spec preview` against a real local HTTP server: requests, pages, tables, schemas,
hints, errors, redaction, and that nothing is ever written (RAWQUERY_HOME stays empty)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from rawquery_workers.authoring.preview import preview_spec
from rawquery_workers.cli.app import main
from rawquery_workers.errors import ConfigError
from rawquery_workers.spec.credentials import Credentials
from rawquery_workers.spec.loading import parse_spec
from tests.support.api_server import ApiServer, RecordedRequest, Reply

TOKEN = "preview-secret-token-123"
USERS = [
    {
        "id": i,
        "login": f"user{i}",
        "created_at": f"2024-01-{i:02d}T10:00:00Z",
        "address": {"city": "Paris", "zip": "75001"},
        "repos": [
            {"id": i * 100 + k, "name": f"r{k}", "pushed": f"2024-03-0{k + 1}"} for k in (0, 1)
        ],
    }
    for i in range(1, 8)
]


def github_like(server: ApiServer, page_size: int = 3) -> None:
    """GET /users?page=N: `page_size` users per page, a Link header to the next page."""

    def handler(request: RecordedRequest) -> Reply:
        page = int(request.params.get("page", "1"))
        chunk = USERS[(page - 1) * page_size : page * page_size]
        headers: dict[str, str | list[str]] = {}
        if page * page_size < len(USERS):
            headers["Link"] = f'<{server.url}/users?page={page + 1}>; rel="next"'
        return Reply(body=chunk, headers=headers)

    server.route("/users", handler)


def write_spec(tmp_path: Path, base_url: str, *streams: dict[str, Any], **top: Any) -> Path:
    spec = {
        "version": "1",
        "base_url": base_url,
        "auth": {"type": "bearer"},
        "streams": list(streams),
        **top,
    }
    path = tmp_path / "spec.json"
    path.write_bytes(orjson.dumps(spec))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["spec", "preview", *args])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def hints_of(document: dict[str, Any], stream: int = 0) -> list[dict[str, Any]]:
    return document["streams"][stream]["hints"]


def assert_nothing_written(home: Path) -> None:
    assert not home.exists() or not any(home.iterdir()), list(home.rglob("*"))


def test_paginated_api_preview_text(
    api_server: ApiServer, tmp_path: Path, rq_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github_like(api_server)
    users = {
        "name": "users",
        "endpoint": "/users",
        "pagination": {"type": "link_header"},
        "primary_key": ["id"],
        "flatten": {"address": "prefix"},
        "expand": {"repos": {"primary_key": "id", "parent_key": "user_id"}},
        "types": {"created_at": "timestamp"},
        "fields": {"rename": {"login": "username"}},
    }
    spec = write_spec(tmp_path, api_server.url, users)
    code, out, err = run(capsys, str(spec), "--auth-token", TOKEN)
    assert code == 0, err
    assert len(api_server.requests_to("/users")) == 2  # --pages defaults to 2
    assert api_server.requests[0].header("authorization") == f"Bearer {TOKEN}"
    assert f"GET {api_server.url}/users -> 200" in out
    assert f"page 1: 3 records, next: {api_server.url}/users?page=2" in out
    assert f"page 2: 3 records, next: {api_server.url}/users?page=3" in out
    assert "more pages exist" in out
    assert "table users (6 rows; primary key id)" in out
    assert "table users_repos (12 rows; primary key id; child of users by user_id)" in out
    schema = out.split("table users (", 1)[1].split("rows after", 1)[0]
    assert "created_at" in schema and "timestamptz" in schema
    assert "username" in schema and "address_city" in schema
    assert "_rq_synced_at" in schema
    # The child's `pushed` dates are untyped: a hint names them by their spec name.
    assert '"repos.pushed": "date"' in out
    assert TOKEN not in out + err
    assert_nothing_written(rq_home)


def test_pages_option_and_json_document(
    api_server: ApiServer, tmp_path: Path, rq_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github_like(api_server, page_size=2)
    users = {"name": "users", "endpoint": "/users", "pagination": {"type": "link_header"}}
    spec = write_spec(tmp_path, api_server.url, users)
    code, out, _ = run(capsys, str(spec), "--auth-token", TOKEN, "--pages", "3", "--json")
    assert code == 0
    document = orjson.loads(out)
    stream = document["streams"][0]
    assert document["ok"] is True and document["max_pages"] == 3
    assert [p["records"] for p in stream["pages"]] == [2, 2, 2]
    assert stream["pages"][-1]["next"] == f"{api_server.url}/users?page=4"
    assert stream["more_pages"] is True
    assert [r["status"] for r in stream["requests"]] == [200, 200, 200]
    assert stream["records"] == 6 and len(stream["sample"]) == 3
    table = stream["tables"][0]
    assert table["name"] == "users" and table["rows"] == 6
    types = {c["name"]: c["type"] for c in table["columns"]}
    assert types["id"] == "long" and types["created_at"] == "string"
    assert types["repos"] == "string" and types["_rq_synced_at"] == "timestamptz"
    [hint] = hints_of(document)
    assert hint["kind"] == "types" and hint["fragment"] == {"types": {"created_at": "timestamp"}}
    assert_nothing_written(rq_home)


def test_link_header_hint_when_stream_has_no_pagination(
    api_server: ApiServer, tmp_path: Path, rq_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github_like(api_server)
    spec = write_spec(tmp_path, api_server.url, {"name": "users", "endpoint": "/users"})
    code, out, _ = run(capsys, str(spec), "--auth-token", TOKEN, "--json")
    assert code == 0
    document = orjson.loads(out)
    assert len(document["streams"][0]["pages"]) == 1
    kinds = {h["kind"]: h for h in hints_of(document)}
    assert kinds["pagination"]["fragment"] == {"pagination": {"type": "link_header"}}
    assert 'rel="next"' in kinds["pagination"]["message"]
    code, text, _ = run(capsys, str(spec), "--auth-token", TOKEN)
    assert 'hint: the response has a Link header with rel="next"' in text
    assert '"type": "link_header"' in text
    assert_nothing_written(rq_home)


def test_next_url_hint_zendesk_shape(
    api_server: ApiServer, tmp_path: Path, rq_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api_server.route(
        "/api/v2/tickets.json",
        lambda r: Reply(
            body={
                "tickets": [{"id": 1, "subject": "hi"}],
                "next_page": f"{api_server.url}/api/v2/tickets.json?page=2",
                "count": 2,
            }
        ),
    )
    tickets = {"name": "tickets", "endpoint": "/api/v2/tickets.json", "data_path": "tickets"}
    spec = write_spec(tmp_path, api_server.url, tickets)
    code, out, _ = run(capsys, str(spec), "--auth-token", TOKEN, "--json")
    assert code == 0
    [hint] = hints_of(orjson.loads(out))
    assert hint["fragment"] == {"pagination": {"type": "next_url", "next_url_path": "next_page"}}
    assert_nothing_written(rq_home)


def test_total_count_and_missing_data_path_hints(
    api_server: ApiServer, tmp_path: Path, rq_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"items": [{"id": i, "updated": "2024-05-01 12:00:00"} for i in range(10)], "total": 95}
    api_server.route("/items", lambda r: Reply(body=body))
    spec = write_spec(tmp_path, api_server.url, {"name": "items", "endpoint": "/items"})
    code, out, _ = run(capsys, str(spec), "--auth-token", TOKEN, "--json")
    assert code == 0
    document = orjson.loads(out)
    by_kind = {h["kind"]: h["fragment"] for h in hints_of(document)}
    assert by_kind["data_path"] == {"data_path": "items"}
    assert by_kind["pagination"]["pagination"]["type"] == "offset"
    assert by_kind["pagination"]["pagination"]["page_size"] == 10
    # Without data_path the whole body is one record: that is what preview shows.
    assert document["streams"][0]["records"] == 1
    assert_nothing_written(rq_home)


def test_timestamp_hint_with_data_path(
    api_server: ApiServer, tmp_path: Path, rq_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"data": [{"id": 1, "updatedAt": "2024-05-01T12:00:00.000Z", "created": 1714564800}]}
    api_server.route("/items", lambda r: Reply(body=body))
    stream = {"name": "items", "endpoint": "/items", "data_path": "data"}
    spec = write_spec(tmp_path, api_server.url, stream)
    code, out, _ = run(capsys, str(spec), "--auth-token", TOKEN, "--json")
    assert code == 0
    [hint] = hints_of(orjson.loads(out))
    assert hint["fragment"] == {"types": {"updatedAt": "timestamp", "created": "timestamp"}}


def test_failing_stream_exit_1_other_streams_still_shown(
    api_server: ApiServer, tmp_path: Path, rq_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api_server.route("/ok", lambda r: Reply(body={"data": {"results": [{"id": 1}]}}))
    spec = write_spec(
        tmp_path,
        api_server.url,
        {"name": "wrong_path", "endpoint": "/ok", "data_path": "results"},
        {"name": "missing", "endpoint": "/missing"},
        {"name": "fine", "endpoint": "/ok", "data_path": "data.results"},
        rate_limit={"max_retries": 0},
    )
    code, out, _ = run(capsys, str(spec), "--auth-token", TOKEN, "--json")
    assert code == 1
    document = orjson.loads(out)
    wrong, missing, fine = document["streams"]
    assert "data_path 'results' is not in the response" in wrong["error"]
    assert wrong["hints"][0]["fragment"] == {"data_path": "data.results"}
    assert "HTTP 404" in missing["error"]
    assert fine["error"] is None and fine["records"] == 1
    assert document["ok"] is False
    code, text, _ = run(capsys, str(spec), "--auth-token", TOKEN, "--stream", "missing")
    assert code == 1 and "error: stream missing, page 1: GET" in text
    assert "stream wrong_path" not in text
    assert_nothing_written(rq_home)


def test_secrets_are_redacted_and_rate_limit_waits_shown(
    api_server: ApiServer, tmp_path: Path, rq_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(request: RecordedRequest) -> Reply:
        page = int(request.params.get("page", "1"))
        nxt = f"{api_server.url}/items?page={page + 1}&api_key={request.params['api_key']}"
        return Reply(body={"items": [{"id": page}], "next": nxt})

    api_server.route("/items", handler)
    spec_path = tmp_path / "spec.json"
    spec_path.write_bytes(
        orjson.dumps(
            {
                "version": "1",
                "base_url": api_server.url,
                "auth": {"type": "api_key", "query_param": "api_key"},
                "rate_limit": {"requests_per_second": 20, "burst": 1},
                "streams": [
                    {
                        "name": "items",
                        "endpoint": "/items",
                        "data_path": "items",
                        "pagination": {"type": "next_url", "next_url_path": "next"},
                    }
                ],
            }
        )
    )
    code, out, err = run(capsys, str(spec_path), "--auth-token", TOKEN, "--pages", "3", "--json")
    assert code == 0, err
    assert TOKEN not in out + err
    stream = orjson.loads(out)["streams"][0]
    assert [r["status"] for r in stream["requests"]] == [200, 200, 200]
    assert sum(r["rate_limit_wait"] for r in stream["requests"]) > 0
    code, text, _ = run(capsys, str(spec_path), "--auth-token", TOKEN, "--pages", "3")
    assert "for the rate limit" in text and TOKEN not in text


def test_unknown_stream_and_missing_credentials(
    api_server: ApiServer, tmp_path: Path, rq_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, api_server.url, {"name": "users", "endpoint": "/users"})
    code, _, err = run(capsys, str(spec), "--auth-token", TOKEN, "--stream", "nope")
    assert code == 2
    assert "error: the spec has no stream 'nope'; its streams are: users" in err
    code, _, err = run(capsys, str(spec))
    assert code == 2
    assert (
        "error: the spec's auth needs --auth-token (auth type bearer): pass it to "
        "`rq spec preview`" in err
    )
    assert api_server.requests == []
    assert_nothing_written(rq_home)


def test_preview_spec_api_graphql(api_server: ApiServer, rq_home: Path) -> None:
    def graphql(request: RecordedRequest) -> Reply:
        after = (request.json() or {}).get("variables", {}).get("cursor")
        nodes = [{"id": "R2", "createdAt": "2024-01-02T00:00:00Z"}] if after else [
            {"id": "R1", "createdAt": "2024-01-01T00:00:00Z"}
        ]  # fmt: skip
        info = {"hasNextPage": not after, "endCursor": "c1" if not after else None}
        return Reply(body={"data": {"viewer": {"repos": {"nodes": nodes, "pageInfo": info}}}})

    api_server.route("/graphql", graphql, methods=("POST",))
    query = "query($cursor: String) { viewer { repos(after: $cursor) { nodes { id } } } }"
    spec = parse_spec(
        {
            "version": "1",
            "base_url": api_server.url,
            "type": "graphql",
            "auth": {"type": "bearer"},
            "streams": [{"name": "repos", "query": query, "data_path": "data.viewer.repos.nodes"}],
        }
    )
    result = preview_spec(spec, Credentials(token=TOKEN))
    [stream] = result.streams
    assert stream.records == 1
    kinds = {h.kind: h.fragment for h in stream.hints}
    assert (
        kinds["pagination"]["pagination"]["cursor_path"] == "data.viewer.repos.pageInfo.endCursor"
    )
    assert kinds["types"] == {"types": {"createdAt": "timestamp"}}
    with pytest.raises(ConfigError):
        preview_spec(spec, Credentials(token=TOKEN), max_pages=0)
    with pytest.raises(ConfigError, match="needs --auth-token"):
        preview_spec(spec, Credentials())
    assert_nothing_written(rq_home)


def test_preview_shows_the_body_sent_the_header_token_the_total_and_parent_values(
    api_server: ApiServer, tmp_path: Path, rq_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api_server.route("/projects", lambda req: Reply({"total": 9, "items": [{"id": 7}, {"id": 8}]}))

    def tasks(request: Any) -> Reply:
        pid = request.path.split("/")[2]
        return Reply(
            [{"id": 1, "pid": pid}],
            headers={"X-Next-Page": "2" if "page" not in request.params else ""},
        )

    api_server.route("/projects/7/tasks", tasks, methods=("POST",))
    api_server.route("/projects/8/tasks", tasks, methods=("POST",))
    projects = {
        "name": "projects",
        "endpoint": "/projects",
        "data_path": "items",
        "pagination": {"type": "offset", "page_size": 2, "total_path": "total"},
    }
    child = {
        "name": "tasks",
        "endpoint": "/projects/{{parent.id}}/tasks",
        "method": "POST",
        "body": {"project": "{{parent.id}}", "state": "open"},
        "parent": {"stream": "projects", "fields": {"project_id": "id"}},
        "pagination": {"type": "cursor", "cursor_header": "X-Next-Page", "param": "page"},
    }
    spec = write_spec(tmp_path, api_server.url, child, projects)

    code, out, err = run(
        capsys, str(spec), "--auth-token", TOKEN, "--pages", "1", "--stream", "tasks"
    )

    assert code == 0, err
    assert out.index("stream projects") < out.index("stream tasks")  # the parent is read first
    assert "page 1: 2 records, the API reports 9 in all, next: offset=2" in out
    assert "next: 2 (from header X-Next-Page)" in out
    assert 'for parent {"id":7}' in out
    assert 'body sent: {"project":7,"state":"open"}' in out
    assert api_server.requests_to("/projects/7/tasks")[0].json() == {"project": 7, "state": "open"}
    assert_nothing_written(rq_home)
