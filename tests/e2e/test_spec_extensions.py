"""The fields of INTERFACE.md "Extensions of spec version 1", each synced end to end through
the CLI against a real HTTP server; the service-shaped fakes are in test_real_services.py.

Every fake here checks what it receives the way an API would (a missing header, a body
without the cursor, an ISO date where epoch seconds are expected are 400s), so a field
that is accepted but not sent fails the sync instead of passing unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Cli, rows, status_streams
from tests.support.api_server import ApiServer, RecordedRequest, Reply

# 10, 11 and 12 tasks: a child walk spans pages and (at 20 records) segments
TASKS = {pid: [{"id": n, "title": f"p{pid} t{n}"} for n in range(1, 10 + pid)] for pid in (1, 2, 3)}


def connect(cli: Cli, write_spec: Callable[..., Path], name: str, spec: dict[str, Any]) -> None:
    done = cli("connect", name, "--spec", str(write_spec(spec)), "--auth-token", "tok-123")
    assert done.code == 0, done.out + done.err


def base(server: ApiServer, *streams: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "bearer"},
        "streams": list(streams),
        **top,
    }


# --- headers, list params, body with the cursor in it ---------------------------------------

TOP_HEADERS = {"Notion-Version": "2022-06-28", "Accept": "application/json"}
BODY_PAGES = {None: ("c1", [1, 2]), "c1": ("c2", [3, 4]), "c2": (None, [5])}
CUSTOMERS = [{"id": f"cus_{n:03d}", "n": n} for n in range(1, 8)]


def body_cursor_api(server: ApiServer) -> dict[str, Any]:
    """A Notion-like query endpoint that checks every header, param and body value."""

    def query(request: RecordedRequest) -> Reply:
        if request.header("Notion-Version") != "2022-06-28":
            return Reply({"object": "error", "code": "missing_version"}, status=400)
        if request.header("Accept") != "application/vnd.test+json":  # the stream's one wins
            return Reply({"object": "error", "code": "bad_accept"}, status=400)
        if request.query.get("expand[]") != ["owner", "tags"]:
            return Reply({"object": "error", "code": "bad_expand"}, status=400)
        body = request.json()
        if body.get("page_size") != 2 or body.get("filter", {}).get("kind") != "db":
            return Reply({"object": "error", "code": "bad_body"}, status=400)
        after, ids = BODY_PAGES[body.get("paging", {}).get("start")]
        results = [{"id": i, "name": f"row {i}"} for i in ids]
        return Reply({"results": results, "next_cursor": after, "has_more": after is not None})

    server.route("/v1/query", query, methods=("POST",))
    return {
        "name": "rows",
        "endpoint": "/v1/query",
        "method": "POST",
        "headers": {"Accept": "application/vnd.test+json"},
        "params": {"expand[]": ["owner", "tags"]},
        "body": {"page_size": 2, "filter": {"kind": "db"}},
        "data_path": "results",
        "primary_key": ["id"],
        "pagination": {
            "type": "cursor",
            "cursor_path": "next_cursor",
            "body_path": "paging.start",
            "has_more_path": "has_more",
        },
    }


def token_apis(server: ApiServer) -> list[dict[str, Any]]:
    """Three streams whose next-page token is in the last record, a header, a URL header."""

    def customers(request: RecordedRequest) -> Reply:  # Stripe: starting_after, has_more
        after = request.params.get("starting_after")
        start = next(i + 1 for i, c in enumerate(CUSTOMERS) if c["id"] == after) if after else 0
        page = CUSTOMERS[start : start + 3]
        return Reply({"object": "list", "data": page, "has_more": start + 3 < len(CUSTOMERS)})

    def issues(request: RecordedRequest) -> Reply:  # GitLab: X-Next-Page, empty at the end
        page = int(request.params.get("page", 1))
        nxt = str(page + 1) if page < 3 else ""
        return Reply([{"id": page * 10 + k} for k in range(2)], headers={"X-Next-Page": nxt})

    def events(request: RecordedRequest) -> Reply:  # the next URL in a header
        page = int(request.params.get("p", 1))
        headers = {"X-Next-Url": f"/events?p={page + 1}"} if page < 2 else {}
        return Reply([{"id": page}], headers=headers)

    server.route("/v1/customers", customers)
    server.route("/issues", issues)
    server.route("/events", events)
    return [
        {
            "name": "customers",
            "endpoint": "/v1/customers",
            "params": {"limit": 3},
            "data_path": "data",
            "primary_key": ["id"],
            "pagination": {
                "type": "cursor",
                "cursor_path": "last_record.id",
                "param": "starting_after",
                "has_more_path": "has_more",
            },
        },
        {
            "name": "issues",
            "endpoint": "/issues",
            "primary_key": ["id"],
            "pagination": {"type": "cursor", "cursor_header": "X-Next-Page", "param": "page"},
        },
        {
            "name": "events",
            "endpoint": "/events",
            "primary_key": ["id"],
            "pagination": {"type": "next_url", "next_url_header": "X-Next-Url"},
        },
    ]


def assert_token_apis_landed(connection: str, server: ApiServer) -> None:
    assert [r["id"] for r in rows(connection, "customers")] == [c["id"] for c in CUSTOMERS]
    assert [r["id"] for r in rows(connection, "issues")] == [10, 11, 20, 21, 30, 31]
    assert [r["id"] for r in rows(connection, "events")] == [1, 2]
    afters = [r.params.get("starting_after") for r in server.requests_to("/v1/customers")]
    assert afters == [None, "cus_003", "cus_006"]


def test_headers_list_params_and_a_body_cursor_reach_the_api(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    stream = body_cursor_api(api_server)
    connect(cli, write_spec, "db", base(api_server, stream, headers=TOP_HEADERS))

    done = cli("connections", "sync", "db")

    assert done.code == 0, done.out + done.err
    assert [r["id"] for r in rows("db", "rows")] == [1, 2, 3, 4, 5]
    sent = [r.json().get("paging", {}).get("start") for r in api_server.requests_to("/v1/query")]
    assert sent == [None, "c1", "c2"]


# --- where the token comes from --------------------------------------------------------------


def test_a_token_from_the_last_record_a_header_or_a_next_url_header(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    connect(cli, write_spec, "tokens", base(api_server, *token_apis(api_server)))

    done = cli("connections", "sync", "tokens")

    assert done.code == 0, done.out + done.err
    assert_token_apis_landed("tokens", api_server)


# --- the cursor written into requests --------------------------------------------------------


@pytest.mark.parametrize(
    ("cursor_format", "first", "second"),
    [
        ("epoch_seconds", "1704067200", "1717243200"),
        ("epoch_millis", "1704067200000", "1717243200000"),
        ("date", "2024-01-01", "2024-06-01"),
        ("%Y-%m-%d %H:%M", "2024-01-01 00:00", "2024-06-01 12:00"),
        ("iso8601", "2024-01-01T00:00:00Z", "2024-06-01T12:00:00Z"),
    ],
)
def test_cursor_start_and_cursor_format_write_the_filter_as_the_api_wants(
    cli: Cli,
    write_spec: Callable[..., Path],
    api_server: ApiServer,
    cursor_format: str,
    first: str,
    second: str,
) -> None:
    records = [{"id": 1, "updated": "2024-06-01T12:00:00Z"}]
    api_server.route("/things", lambda request: Reply(records))
    stream = {
        "name": "things",
        "endpoint": "/things",
        "primary_key": ["id"],
        "cursor_field": "updated",
        "cursor_start": "2024-01-01T00:00:00Z",
        "cursor_format": cursor_format,
        "cursor_lookback": 0,
        "params": {"since": "{{cursor}}", "q": "kind = 'a' AND updated >= '{{cursor}}'"},
    }
    connect(cli, write_spec, "fmt", base(api_server, stream))

    for _ in range(2):
        done = cli("connections", "sync", "fmt")
        assert done.code == 0, done.out + done.err

    one, two = api_server.requests_to("/things")
    assert one.params == {"since": first, "q": f"kind = 'a' AND updated >= '{first}'"}
    assert two.params["since"] == second
    assert two.params["q"] == f"kind = 'a' AND updated >= '{second}'"


def test_an_embedded_cursor_without_cursor_start_is_refused_naming_the_field(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    stream = {
        "name": "issues",
        "endpoint": "/search",
        "cursor_field": "updated",
        "params": {"jql": 'project = A AND updated >= "{{cursor}}"'},
    }
    path = write_spec(base(api_server, stream))

    done = cli("connect", "jira", "--spec", str(path), "--auth-token", "t")

    assert done.code == 2
    assert "streams[0].params.jql" in done.err and "cursor_start" in done.err
    assert cli("connections", "list").out.count("jira") == 0


# --- errors in 200 answers, statuses read as the end -----------------------------------------


def test_an_error_in_a_200_answer_fails_the_stream_quoting_it(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    api_server.route("/users.list", lambda request: Reply({"ok": False, "error": "invalid_auth"}))
    stream = {"name": "users", "endpoint": "/users.list", "data_path": "members"}
    connect(cli, write_spec, "slack", base(api_server, stream, error_path="error"))

    done = cli("connections", "sync", "slack")

    assert done.code != 0
    assert "invalid_auth" in done.out + done.err
    assert "data_path" not in done.out + done.err
    assert len(api_server.requests_to("/users.list")) == 1  # not retried
    assert status_streams(cli, "slack")["users"]["status"] == "failed"


# --- child requests ---------------------------------------------------------------------------


def projects_and_tasks(server: ApiServer, gone: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    server.route("/projects", lambda request: Reply([{"id": p, "name": f"P{p}"} for p in TASKS]))

    def tasks(request: RecordedRequest) -> Reply:
        pid = int(request.path.split("/")[2])
        if pid in gone:
            return Reply({"message": "404 Project Not Found"}, status=404)
        page = int(request.params.get("page", 1))
        chunk = TASKS[pid][(page - 1) * 2 : page * 2]
        nxt = str(page + 1) if page * 2 < len(TASKS[pid]) else ""
        return Reply(chunk, headers={"X-Next-Page": nxt})

    for pid in TASKS:
        server.route(f"/projects/{pid}/tasks", tasks)


TASK_STREAMS = [
    {
        "name": "tasks",  # listed before its parent: the parent still syncs first
        "endpoint": "/projects/{{parent.id}}/tasks",
        "parent": {"stream": "projects", "fields": {"project_id": "id", "project": "name"}},
        "primary_key": ["project_id", "id"],
        "pagination": {"type": "cursor", "cursor_header": "X-Next-Page", "param": "page"},
        "ignore_status": [404],
    },
    {"name": "projects", "endpoint": "/projects", "primary_key": ["id"]},
]


def expected_tasks(gone: set[int] = frozenset()) -> list[tuple[int, int, str]]:  # type: ignore[assignment]
    return sorted(
        (pid, task["id"], f"P{pid}")
        for pid, tasks in TASKS.items()
        if pid not in gone
        for task in tasks
    )


def task_rows(connection: str) -> list[tuple[int, int, str]]:
    return sorted((r["project_id"], r["id"], r["project"]) for r in rows(connection, "tasks", None))


def test_child_requests_run_once_per_parent_row_and_carry_its_fields(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    projects_and_tasks(api_server, gone={2})
    connect(cli, write_spec, "pm", base(api_server, *TASK_STREAMS))

    done = cli("connections", "sync", "pm", "--stream", "tasks")  # brings its parent along

    assert done.code == 0, done.out + done.err
    assert task_rows("pm") == expected_tasks(gone={2})
    assert len(rows("pm", "projects")) == 3
    streams = status_streams(cli, "pm")
    assert streams["tasks"]["status"] == streams["projects"]["status"] == "succeeded"
    # a task id repeats across projects: the parent column in the key keeps every one
    assert len({r["id"] for r in rows("pm", "tasks", None)}) < len(expected_tasks(gone={2}))


def test_a_failed_parent_fails_its_child_without_requests(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    projects_and_tasks(api_server)
    api_server.route("/projects", lambda request: Reply({"message": "bad request"}, status=400))
    connect(cli, write_spec, "pm", base(api_server, *TASK_STREAMS))

    done = cli("connections", "sync", "pm")

    assert done.code != 0
    streams = status_streams(cli, "pm")
    assert streams["projects"]["status"] == streams["tasks"]["status"] == "failed"
    assert "parent stream 'projects' failed" in (streams["tasks"].get("error") or "")
    assert not any(r.path.endswith("/tasks") for r in api_server.requests)


def test_a_template_naming_a_missing_parent_column_says_which(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    projects_and_tasks(api_server)
    child = {**TASK_STREAMS[0], "endpoint": "/projects/{{parent.uuid}}/tasks"}
    connect(cli, write_spec, "pm", base(api_server, child, TASK_STREAMS[1]))

    done = cli("connections", "sync", "pm")

    assert done.code != 0
    error = status_streams(cli, "pm")["tasks"].get("error") or ""
    assert "'uuid'" in error and "id, name" in error


def test_a_failed_child_walk_resumes_at_the_parent_it_was_in(
    cli: Cli,
    write_spec: Callable[..., Path],
    api_server: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "2")  # a commit per page of tasks
    broken = {"on": True}
    projects_and_tasks(api_server)

    def project_two(request: RecordedRequest) -> Reply:
        if broken["on"] and request.params.get("page") == "2":
            return Reply({"message": "bad request"}, status=400)
        page = int(request.params.get("page", 1))
        chunk = TASKS[2][(page - 1) * 2 : page * 2]
        nxt = str(page + 1) if page * 2 < len(TASKS[2]) else ""
        return Reply(chunk, headers={"X-Next-Page": nxt})

    api_server.route("/projects/2/tasks", project_two)
    connect(cli, write_spec, "pm", base(api_server, *TASK_STREAMS))

    first = cli("connections", "sync", "pm")
    assert first.code != 0
    assert status_streams(cli, "pm")["tasks"]["status"] == "failed"
    before = len(api_server.requests_to("/projects/1/tasks"))
    broken["on"] = False

    second = cli("connections", "sync", "pm")

    assert second.code == 0, second.out + second.err
    assert task_rows("pm") == expected_tasks()
    assert len(api_server.requests_to("/projects/1/tasks")) == before  # project 1 not re-read
    pages_of_two = [r.params.get("page") for r in api_server.requests_to("/projects/2/tasks")]
    last = (len(TASKS[2]) + 1) // 2
    # resumed at the page that failed
    assert pages_of_two == [None, "2", *map(str, range(2, last + 1))]
