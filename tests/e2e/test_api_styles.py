"""Issue 3 "done when": a full sync of each API style lands the exact records in Iceberg.

Each server below behaves like the real API style (auth checked on every request, its own
pagination) and holds the ground truth the synced table is compared with, row for row.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rawquery_workers.registry import open_registry
from tests.e2e.helpers import Cli, files_containing, rows, status_streams
from tests.support.api_server import ApiServer, RecordedRequest, Reply

Spec = dict[str, Any]


@pytest.fixture
def server() -> Iterator[ApiServer]:
    with ApiServer() as api:
        yield api


def _sync_ok(cli: Cli, name: str, *args: str) -> None:
    result = cli("connections", "sync", name, *args)
    assert result.code == 0, result.out + result.err
    for stream in status_streams(cli, name).values():
        assert stream["status"] == "succeeded", stream


def _connect(cli: Cli, write_spec: Callable[..., Path], name: str, spec: Spec, *flags: str):
    result = cli("connect", name, "--spec", str(write_spec(spec, f"{name}.json")), *flags)
    assert result.code == 0, result.err


def _unauthorized() -> Reply:
    return Reply({"message": "Bad credentials"}, 401)


# --- GitHub: Link headers, bearer token, the body is the array -----------------------------

REPOS = [
    {"id": 100 + i, "name": f"repo-{i}", "private": i % 3 == 0, "stargazers_count": i * 7}
    for i in range(10)
]


def test_github_style_link_header_pagination(
    cli: Cli, server: ApiServer, write_spec: Callable[..., Path]
) -> None:
    def repos(req: RecordedRequest) -> Reply:
        if req.header("authorization") != "Bearer gh-token":
            return _unauthorized()
        page, per = int(req.params.get("page", 1)), int(req.params["per_page"])
        last = (len(REPOS) + per - 1) // per
        links = [f'<{server.url}/user/repos?per_page={per}&page={last}>; rel="last"']
        if page < last:
            links.insert(0, f'<{server.url}/user/repos?per_page={per}&page={page + 1}>; rel="next"')
        if page > 1:
            links.append(f'</user/repos?per_page={per}&page={page - 1}>; rel="prev"')
        return Reply(REPOS[(page - 1) * per : page * per], headers={"Link": ", ".join(links)})

    server.route("/user/repos", repos)
    spec = {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "bearer"},
        "streams": [
            {
                "name": "repos",
                "endpoint": "/user/repos",
                "params": {"per_page": 3},
                "primary_key": ["id"],
                "pagination": {"type": "link_header"},
            }
        ],
    }
    _connect(cli, write_spec, "gh", spec, "--auth-token", "gh-token")
    _sync_ok(cli, "gh")
    assert rows("gh", "repos") == REPOS
    assert len(server.requests_to("/user/repos")) == 4


# --- HubSpot: paging.next.after, OAuth2 with rotating refresh tokens -----------------------

CONTACTS = [
    {
        "id": str(500 + i),
        "properties": {"firstname": f"First{i}", "lastname": f"Last{i}", "email": f"c{i}@x.io"},
        "updatedAt": f"2024-05-{1 + i:02d}T10:00:00Z",
        "archived": False,
    }
    for i in range(7)
]


class HubSpot:
    """Each token exchange issues a new refresh token and revokes the one it was given."""

    def __init__(self) -> None:
        self.refresh = "hs-refresh-0"
        self.access: str | None = None
        self.issued = 0
        self.lock = threading.Lock()

    def token(self, req: RecordedRequest) -> Reply:
        from urllib.parse import parse_qs

        form = {k: v[-1] for k, v in parse_qs(req.body.decode()).items()}
        with self.lock:
            if (form.get("client_id"), form.get("client_secret")) != ("hs-id", "hs-secret"):
                return Reply({"status": "BAD_CLIENT_ID"}, 401)
            if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != (
                self.refresh
            ):
                return Reply({"status": "BAD_REFRESH_TOKEN", "message": "invalid_grant"}, 400)
            self.issued += 1
            self.refresh = f"hs-refresh-{self.issued}"
            self.access = f"hs-access-{self.issued}"
            body = {"access_token": self.access, "refresh_token": self.refresh, "expires_in": 1800}
        return Reply(body)

    def contacts(self, req: RecordedRequest) -> Reply:
        if self.access is None or req.header("authorization") != f"Bearer {self.access}":
            return _unauthorized()
        after, limit = int(req.params.get("after", 0)), int(req.params["limit"])
        body: dict[str, Any] = {"results": CONTACTS[after : after + limit]}
        if after + limit < len(CONTACTS):
            body["paging"] = {"next": {"after": str(after + limit), "link": "ignored"}}
        return Reply(body)


def test_hubspot_style_cursor_pagination_with_rotating_oauth_refresh_tokens(
    cli: Cli, server: ApiServer, write_spec: Callable[..., Path], rq_home: Path
) -> None:
    hub = HubSpot()
    server.route("/oauth/v1/token", hub.token, methods=("POST",))
    server.route("/crm/v3/objects/contacts", hub.contacts)
    spec = {
        "version": "1",
        "base_url": server.url,
        "auth": {
            "type": "oauth2",
            "token_url": f"{server.url}/oauth/v1/token",
            "refresh_url": f"{server.url}/oauth/v1/token",
            "grant_type": "refresh_token",
        },
        "streams": [
            {
                "name": "contacts",
                "endpoint": "/crm/v3/objects/contacts",
                "params": {"limit": 3, "properties": "firstname,lastname,email"},
                "pagination": {
                    "type": "cursor",
                    "cursor_path": "paging.next.after",
                    "param": "after",
                },
                "data_path": "results",
                "primary_key": ["id"],
                "cursor_field": "updatedAt",
                "sync_modes": ["full_refresh", "incremental"],
                "flatten": {"properties": "lift"},
                "fields": {"include": ["id", "firstname", "lastname", "email", "updatedAt"]},
            }
        ],
    }
    flags = ["--client-id", "hs-id", "--client-secret", "hs-secret"]
    _connect(cli, write_spec, "hub", spec, *flags, "--refresh-token", "hs-refresh-0")
    _sync_ok(cli, "hub")
    expected = [
        {
            "id": c["id"],
            **c["properties"],
            "updatedAt": c["updatedAt"],
        }
        for c in CONTACTS
    ]
    assert rows("hub", "contacts") == expected
    first_rotation = hub.refresh
    assert first_rotation != "hs-refresh-0"
    assert open_registry().get_credentials("hub").refresh_token == first_rotation

    # The second sync can only work with the rotated (persisted) refresh token.
    _sync_ok(cli, "hub", "--full-refresh")
    assert hub.refresh != first_rotation
    assert rows("hub", "contacts") == expected
    stored = open_registry().get_credentials("hub")
    assert stored.refresh_token == hub.refresh
    secrets = [hub.refresh, first_rotation, "hs-secret", hub.access or "", "hs-refresh-0"]
    assert files_containing(rq_home, secrets) == []


# --- Zendesk: next_page (absolute URL), basic auth ----------------------------------------

TICKETS = [
    {
        "id": 9000 + i,
        "subject": f"Printer on fire #{i}",
        "status": ["new", "open", "solved"][i % 3],
        "requester": {"id": 40 + i % 4, "name": f"Requester {i % 4}"},
        "tags": ["urgent"] if i % 2 else [],
    }
    for i in range(8)
]


def test_zendesk_style_next_page_with_basic_auth(
    cli: Cli, server: ApiServer, write_spec: Callable[..., Path]
) -> None:
    good = "Basic " + base64.b64encode(b"agent@example.com/token:zd-secret").decode()

    def tickets(req: RecordedRequest) -> Reply:
        if req.header("authorization") != good:
            return _unauthorized()
        page = int(req.params.get("page", 1))
        chunk = TICKETS[(page - 1) * 3 : page * 3]
        more = page * 3 < len(TICKETS)
        nxt = f"{server.url}/api/v2/tickets.json?page={page + 1}&per_page=3" if more else None
        return Reply({"tickets": chunk, "next_page": nxt, "count": len(TICKETS)})

    server.route("/api/v2/tickets.json", tickets)
    spec = {
        "version": "1",
        "base_url": f"{server.url}/api/v2",
        "auth": {"type": "basic"},
        "streams": [
            {
                "name": "tickets",
                "endpoint": "/tickets.json",
                "data_path": "tickets",
                "primary_key": ["id"],
                "pagination": {"type": "next_url", "next_url_path": "next_page"},
                "flatten": {"requester": "prefix"},
                "types": {"tags": "json"},
            }
        ],
    }
    flags = ["--auth-user", "agent@example.com/token", "--auth-pass", "zd-secret"]
    _connect(cli, write_spec, "zd", spec, *flags)
    _sync_ok(cli, "zd")
    expected = [
        {
            "id": t["id"],
            "subject": t["subject"],
            "status": t["status"],
            "requester_id": t["requester"]["id"],
            "requester_name": t["requester"]["name"],
            "tags": '["urgent"]' if t["tags"] else "[]",
        }
        for t in TICKETS
    ]
    assert rows("zd", "tickets") == expected
    assert len(server.requests_to("/api/v2/tickets.json")) == 3


# --- A session-token login (custom auth), cursor in meta.next_cursor ------------------------

NOTES = [{"id": i, "text": f"note {i}", "score": i * 1.5} for i in range(1, 12)]


def test_session_token_login_custom_auth(
    cli: Cli, server: ApiServer, write_spec: Callable[..., Path]
) -> None:
    logins: list[Any] = []

    def login(req: RecordedRequest) -> Reply:
        logins.append(req.json())
        if req.json() != {"username": "ann", "password": "pw-session"}:
            return Reply({"error": "bad login"}, 403)
        return Reply({"data": {"token": "sess-abc", "ttl": 3600}})

    def notes(req: RecordedRequest) -> Reply:
        if req.header("x-session-token") != "sess-abc" or req.params.get("app") != "rq":
            return _unauthorized()
        start = int(req.params.get("cursor", 0))
        chunk = NOTES[start : start + 4]
        nxt = str(start + 4) if start + 4 < len(NOTES) else ""
        return Reply({"items": chunk, "meta": {"next_cursor": nxt}})

    server.route("/auth/session", login, methods=("POST",))
    server.route("/notes", notes)
    spec = {
        "version": "1",
        "base_url": server.url,
        "auth": {
            "type": "custom",
            "pre_request": {
                "url": f"{server.url}/auth/session",
                "method": "POST",
                "body": {"username": "{{auth.username}}", "password": "{{auth.password}}"},
                "extract": {"session_token": "response.data.token"},
            },
            "headers": {"X-Session-Token": "{{session_token}}"},
            "params": {"app": "rq"},
        },
        "streams": [
            {
                "name": "notes",
                "endpoint": "/notes",
                "data_path": "items",
                "primary_key": ["id"],
                "pagination": {
                    "type": "cursor",
                    "cursor_path": "meta.next_cursor",
                    "param": "cursor",
                },
            }
        ],
    }
    _connect(cli, write_spec, "sess", spec, "--auth-user", "ann", "--auth-pass", "pw-session")
    _sync_ok(cli, "sess")
    assert rows("sess", "notes") == NOTES
    assert logins and all(body == {"username": "ann", "password": "pw-session"} for body in logins)


# --- GraphQL Relay ------------------------------------------------------------------------

NODES = [
    {
        "id": f"R_{i:03d}",
        "name": f"gql-{i}",
        "createdAt": f"2023-0{1 + i % 9}-01T00:00:00Z",
        "stargazerCount": i,
    }
    for i in range(9)
]
QUERY = (
    "query($cursor: String) { viewer { repositories(first: 4, after: $cursor) "
    "{ nodes { id name createdAt stargazerCount } pageInfo { hasNextPage endCursor } } } }"
)


def test_graphql_relay_pagination(
    cli: Cli, server: ApiServer, write_spec: Callable[..., Path]
) -> None:
    def graphql(req: RecordedRequest) -> Reply:
        if req.header("authorization") != "Bearer gql-token":
            return _unauthorized()
        body = req.json()
        assert body["query"] == QUERY
        after = body.get("variables", {}).get("cursor")
        start = int(after.split(":")[1]) if after else 0
        chunk = NODES[start : start + 4]
        end = start + len(chunk)
        info = {"hasNextPage": end < len(NODES), "endCursor": f"c:{end}"}
        repos = {"nodes": chunk, "pageInfo": info}
        return Reply({"data": {"viewer": {"repositories": repos}}})

    server.route("/graphql", graphql, methods=("POST",))
    spec = {
        "version": "1",
        "base_url": server.url,
        "type": "graphql",
        "auth": {"type": "bearer"},
        "streams": [
            {
                "name": "repositories",
                "query": QUERY,
                "data_path": "data.viewer.repositories.nodes",
                "pagination": {
                    "type": "cursor",
                    "cursor_variable": "cursor",
                    "cursor_path": "data.viewer.repositories.pageInfo.endCursor",
                    "has_more_path": "data.viewer.repositories.pageInfo.hasNextPage",
                },
                "primary_key": ["id"],
                "types": {"createdAt": "string"},
            }
        ],
    }
    _connect(cli, write_spec, "gql", spec, "--auth-token", "gql-token")
    _sync_ok(cli, "gql")
    assert rows("gql", "repositories") == NODES
    assert len(server.requests_to("/graphql")) == 3


# --- api_key in a header (offset) and in the query (page_number) ---------------------------

WIDGETS = [{"id": i, "label": f"w{i}", "active": i % 2 == 0} for i in range(1, 14)]


def test_api_key_in_header_and_in_query(
    cli: Cli, server: ApiServer, write_spec: Callable[..., Path]
) -> None:
    def widgets(req: RecordedRequest) -> Reply:
        if req.header("x-api-key") != "hdr-key" or "api_key" in req.params:
            return _unauthorized()
        offset, limit = int(req.params.get("offset", 0)), int(req.params["limit"])
        return Reply({"data": WIDGETS[offset : offset + limit]})

    def gadgets(req: RecordedRequest) -> Reply:
        if req.params.get("api_key") != "qry-key" or req.header("x-api-key"):
            return _unauthorized()
        page, size = int(req.params["page"]), int(req.params["per_page"])
        return Reply({"results": WIDGETS[(page - 1) * size : page * size]})

    server.route("/widgets", widgets)
    server.route("/gadgets", gadgets)
    header_spec = {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "api_key", "header": "X-API-Key"},
        "streams": [
            {
                "name": "widgets",
                "endpoint": "/widgets",
                "data_path": "data",
                "primary_key": ["id"],
                "pagination": {"type": "offset", "page_size": 5},
            }
        ],
    }
    query_spec = {
        **header_spec,
        "auth": {"type": "api_key", "query_param": "api_key"},
        "streams": [
            {
                "name": "gadgets",
                "endpoint": "/gadgets",
                "data_path": "results",
                "pagination": {
                    "type": "page_number",
                    "param": "page",
                    "page_size_param": "per_page",
                    "page_size": 4,
                },
            }
        ],
    }
    _connect(cli, write_spec, "hdr", header_spec, "--auth-token", "hdr-key")
    _connect(cli, write_spec, "qry", query_spec, "--auth-token", "qry-key")
    _sync_ok(cli, "hdr")
    _sync_ok(cli, "qry")
    assert rows("hdr", "widgets") == WIDGETS
    assert rows("qry", "gadgets") == WIDGETS
    assert len(server.requests_to("/widgets")) == 3  # 5 + 5 + 3 (short page ends it)
    assert len(server.requests_to("/gadgets")) == 4  # 4 + 4 + 4 + 1
