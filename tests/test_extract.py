"""Reading streams end to end against a real local server that behaves like real APIs
(GitHub Link headers, HubSpot cursors, Zendesk next_page URLs, offset and page-number
APIs, GraphQL Relay), including faults, resume, loop guards and the origin rule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rawquery_workers.errors import (
    PaginationLoopError,
    ResponseError,
    RetriableError,
    SourceError,
    SpecError,
)
from rawquery_workers.http.client import ApiClient, build_client
from rawquery_workers.paginate.extract import (
    Page,
    base_request,
    endpoint_url,
    extract_records,
    read_pages,
)
from rawquery_workers.spec.models import RateLimit, Spec
from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.http_helpers import (
    SECRET,
    BearerTestAuth,
    QueryKeyTestAuth,
    make_api,
    sequence,
)

ITEMS = [{"id": i, "name": f"item {i}"} for i in range(1, 6)]


def make_spec(base_url: str, stream: dict[str, Any], api_type: str = "rest") -> Spec:
    data = {
        "version": "1",
        "base_url": base_url,
        "type": api_type,
        "auth": {"type": "bearer"},
        "streams": [{"name": "items", **stream}],
    }
    return Spec.model_validate(data, context={"api_type": api_type})


def read_all(spec: Spec, api: ApiClient, **kwargs: Any) -> list[Page]:
    return list(read_pages(spec, spec.streams[0], api, **kwargs))


def ids(pages: list[Page]) -> list[int]:
    return [record["id"] for page in pages for record in page.records]  # type: ignore[misc]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with build_client(read_timeout=5.0) as http:
        yield http


@pytest.fixture
def other_server() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


# --- one API style per pagination type -----------------------------------------------------


def github_repos(server: ApiServer) -> None:
    """Link headers: absolute URLs with next+last, then several header lines with a relative
    next, then only prev/first on the last page."""

    def handler(req: RecordedRequest) -> Reply:
        page = int(req.params.get("page", "1"))
        base = f"{server.url}/user/repos"
        links: dict[int, str | list[str]] = {
            1: f'<{base}?page=2&per_page=2>; rel="next", <{base}?page=3&per_page=2>; rel="last"',
            2: [f'<{base}?page=1&per_page=2>; rel="prev"', "</user/repos?page=3>; rel=next"],
            3: f'<{base}?page=2&per_page=2>; rel="prev", <{base}?page=1&per_page=2>; rel="first"',
        }
        return Reply(ITEMS[(page - 1) * 2 : page * 2], headers={"Link": links[page]})

    server.route("/user/repos", handler)


def test_github_style_link_headers(api_server: ApiServer, client: httpx.Client) -> None:
    github_repos(api_server)
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/user/repos",
            "params": {"per_page": 2},
            "pagination": {"type": "link_header"},
        },
    )
    api, _ = make_api(client, api_server.url, auth=BearerTestAuth())
    pages = read_all(spec, api)
    assert ids(pages) == [1, 2, 3, 4, 5]
    assert [p.number for p in pages] == [1, 2, 3]
    assert pages[0].url == f"{api_server.url}/user/repos?per_page=2"
    assert pages[0].raw_next == f"{api_server.url}/user/repos?page=2&per_page=2"
    assert pages[1].next_state == {"url": f"{api_server.url}/user/repos?page=3"}
    assert pages[2].next_state is None and pages[2].raw_next is None
    sent = api_server.requests_to("/user/repos")
    assert [r.params.get("page") for r in sent] == [None, "2", "3"]
    assert all(r.header("authorization") == f"Bearer {SECRET}" for r in sent)


def test_hubspot_style_cursor(api_server: ApiServer, client: httpx.Client) -> None:
    def handler(req: RecordedRequest) -> Reply:
        start = int(req.params.get("after", "0"))
        limit = int(req.params["limit"])
        body: dict[str, Any] = {"results": ITEMS[start : start + limit]}
        if start + limit < len(ITEMS):
            after = str(start + limit)
            body["paging"] = {"next": {"after": after, "link": f"/contacts?after={after}"}}
        return Reply(body)

    api_server.route("/crm/v3/objects/contacts", handler)
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/crm/v3/objects/contacts",
            "data_path": "results",
            "params": {"limit": 2, "properties": "firstname,lastname"},
            "pagination": {"type": "cursor", "cursor_path": "paging.next.after", "param": "after"},
        },
    )
    api, _ = make_api(client, api_server.url)
    pages = read_all(spec, api)
    assert ids(pages) == [1, 2, 3, 4, 5]
    assert [p.next_state for p in pages] == [{"cursor": "2"}, {"cursor": "4"}, None]
    sent = api_server.requests
    assert [r.params.get("after") for r in sent] == [None, "2", "4"]
    assert sent[1].params["properties"] == "firstname,lastname"


def test_zendesk_style_next_page_absolute_url(api_server: ApiServer, client: httpx.Client) -> None:
    def handler(req: RecordedRequest) -> Reply:
        page = int(req.params.get("page", "1"))
        nxt = f"{api_server.url}/api/v2/tickets.json?page={page + 1}" if page < 3 else None
        return Reply({"tickets": ITEMS[(page - 1) * 2 : page * 2], "next_page": nxt})

    api_server.route("/api/v2/tickets.json", handler)
    spec = make_spec(
        api_server.url + "/api/v2",
        {
            "endpoint": "tickets.json",
            "data_path": "tickets",
            "pagination": {"type": "next_url", "next_url_path": "next_page"},
        },
    )
    api, _ = make_api(client, api_server.url)
    pages = read_all(spec, api)
    assert ids(pages) == [1, 2, 3, 4, 5] and pages[-1].next_state is None


def offset_api(req: RecordedRequest) -> Reply:
    start, limit = int(req.params["offset"]), int(req.params["limit"])
    return Reply({"data": ITEMS[start : start + limit], "total": len(ITEMS)})


def test_offset_with_a_short_last_page(api_server: ApiServer, client: httpx.Client) -> None:
    api_server.route("/orders", offset_api)
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/orders",
            "data_path": "data",
            "pagination": {"type": "offset", "page_size": 2},
        },
    )
    api, _ = make_api(client, api_server.url)
    pages = read_all(spec, api)
    assert [len(p.records) for p in pages] == [2, 2, 1]
    assert [r.params["offset"] for r in api_server.requests] == ["0", "2", "4"]
    assert [p.raw_next for p in pages] == ["offset=2", "offset=4", None]


def test_offset_ending_on_a_full_page_stops_at_the_empty_one(
    api_server: ApiServer, client: httpx.Client
) -> None:
    api_server.route("/orders", offset_api)
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/orders",
            "data_path": "data",
            "pagination": {"type": "offset", "page_size": 5},
        },
    )
    api, _ = make_api(client, api_server.url)
    assert [len(p.records) for p in read_all(spec, api)] == [5, 0]


def test_page_number(api_server: ApiServer, client: httpx.Client) -> None:
    def handler(req: RecordedRequest) -> Reply:
        page, size = int(req.params["page"]), int(req.params["per_page"])
        return Reply({"results": ITEMS[(page - 1) * size : page * size]})

    api_server.route("/customers", handler)
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/customers",
            "data_path": "results",
            "pagination": {"type": "page_number", "page_size_param": "per_page", "page_size": 2},
        },
    )
    api, _ = make_api(client, api_server.url)
    pages = read_all(spec, api)
    assert ids(pages) == [1, 2, 3, 4, 5]
    assert [p.next_state and p.next_state["page"] for p in pages] == [2, 3, None]


# --- GraphQL -------------------------------------------------------------------------------

QUERY = (
    "query($cursor: String, $since: String) { viewer { repositories(first: 2, after: $cursor)"
    " { nodes { id name } pageInfo { hasNextPage endCursor } } } }"
)
RELAY = {
    "query": QUERY,
    "data_path": "data.viewer.repositories.nodes",
    "pagination": {
        "type": "cursor",
        "cursor_variable": "cursor",
        "cursor_path": "data.viewer.repositories.pageInfo.endCursor",
        "has_more_path": "data.viewer.repositories.pageInfo.hasNextPage",
    },
}


def relay_api(req: RecordedRequest) -> Reply:
    variables = req.json()["variables"]
    start = int(variables.get("cursor") or 0)
    nodes = ITEMS[start : start + 2]
    info = {"hasNextPage": start + 2 < len(ITEMS), "endCursor": str(start + 2)}
    repos = {"nodes": nodes, "pageInfo": info}
    return Reply({"data": {"viewer": {"repositories": repos}}})


def test_graphql_relay(api_server: ApiServer, client: httpx.Client) -> None:
    api_server.route("/graphql", relay_api, methods=("POST",))
    stream = {**RELAY, "variables": {"since": "{{cursor}}"}, "cursor_field": "updatedAt"}
    spec = make_spec(api_server.url, stream, "graphql")
    api, _ = make_api(client, api_server.url, auth=BearerTestAuth())
    pages = read_all(spec, api)
    assert ids(pages) == [1, 2, 3, 4, 5] and pages[-1].next_state is None
    bodies = [r.json() for r in api_server.requests]
    assert all(r.method == "POST" for r in api_server.requests)
    assert bodies[0] == {"query": QUERY, "variables": {}}  # no cursor yet: since left out
    assert [b["variables"].get("cursor") for b in bodies] == [None, "2", "4"]
    resumed = read_all(spec, api, cursor="2024-05-01", resume={"cursor": "4"})
    assert ids(resumed) == [5]
    assert api_server.requests[-1].json()["variables"] == {"since": "2024-05-01", "cursor": "4"}


def test_graphql_errors_array_fails_the_stream(api_server: ApiServer, client: httpx.Client) -> None:
    errors = [
        {"message": "Field 'stargazers' doesn't exist on type 'Repository'"},
        {"message": "Variable $cursor is declared but not used"},
    ]
    api_server.route(
        "/graphql", lambda req: Reply({"data": None, "errors": errors}), methods=("POST",)
    )
    spec = make_spec(api_server.url, RELAY, "graphql")
    api, _ = make_api(client, api_server.url)
    with pytest.raises(ResponseError) as info:
        read_all(spec, api)
    message = str(info.value)
    assert f"stream items, page 1 ({api_server.url}/graphql)" in message
    assert "Field 'stargazers' doesn't exist" in message and "declared but not used" in message


# --- requests: params, cursor, endpoints ---------------------------------------------------


def test_cursor_params_are_left_out_on_a_first_sync_and_rendered_after(
    api_server: ApiServer, client: httpx.Client
) -> None:
    """A value that is only `{{cursor}}` is left out on a first sync; one that embeds it
    takes `cursor_start` then (INTERFACE.md, Extensions)."""
    api_server.route("/v1/events", lambda req: Reply(ITEMS))
    spec = make_spec(
        api_server.url + "/v1/",
        {
            "endpoint": "events",
            "params": {
                "updated_since": "{{cursor}}",
                "filter": "updated>{{cursor}}",
                "limit": 10,
                "active": True,
            },
            "cursor_field": "updated_at",
            "cursor_start": "2000-01-01T00:00:00Z",
        },
    )
    api, _ = make_api(client, api_server.url)
    read_all(spec, api)
    read_all(spec, api, cursor="2024-01-01T00:00:00Z")
    first, second = api_server.requests
    assert first.params == {
        "updated_since": "2000-01-01T00:00:00Z",
        "filter": "updated>2000-01-01T00:00:00Z",
        "limit": "10",
        "active": "true",
    }
    assert second.params == {
        "updated_since": "2024-01-01T00:00:00Z",
        "filter": "updated>2024-01-01T00:00:00Z",
        "limit": "10",
        "active": "true",
    }
    without_start = make_spec(
        api_server.url + "/v1/",
        {
            "endpoint": "events",
            "params": {"limit": 10, "updated_since": "{{cursor}}"},
            "cursor_field": "updated_at",
        },
    )
    read_all(without_start, api)
    assert api_server.requests[-1].params == {"limit": "10"}


def test_absolute_endpoints_only_on_base_urls_origin(
    api_server: ApiServer, other_server: ApiServer
) -> None:
    same = make_spec(api_server.url + "/v1", {"endpoint": f"{api_server.url}/v2/things"})
    assert base_request(same, same.streams[0]).url == f"{api_server.url}/v2/things"
    # The spec loader refuses such endpoints too; extraction checks again on its own.
    with pytest.raises(SpecError, match="not on base_url's origin"):
        endpoint_url(api_server.url, f"{other_server.url}/things", "items")
    with pytest.raises(SpecError, match="not on base_url's origin"):
        endpoint_url("https://api.example.com", "//evil.example.com/x", "items")
    assert endpoint_url("https://h/v1/", "/users?state=all") == "https://h/v1/users?state=all"


# --- records -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path", "expected"),
    [
        ([{"id": 1}, {"id": 2}], None, [{"id": 1}, {"id": 2}]),
        ({"id": 1}, None, [{"id": 1}]),
        ({"data": {"items": [{"id": 3}]}}, "data.items", [{"id": 3}]),
        ({"data": None}, "data", []),
        ({"data": []}, "data", []),
        (None, None, []),
    ],
)
def test_records_at_data_path(body: Any, path: str | None, expected: list[Any]) -> None:
    assert extract_records(body, path, "here") == expected


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (
            {"items": []},
            "data",
            "here: data_path 'data' is not in the response (an object with keys items)",
        ),
        (
            {"data": {"items": []}},
            "data",
            "data_path 'data' holds an object with keys items, not an array of records",
        ),
        ({"data": "oops"}, "data", "holds a str, not an array"),
        ({"data": [{"id": 1}, "two"]}, "data", "record 1 is a str, not a JSON object"),
        ([[1, 2]], None, "record 0 is an array of 2 items, not a JSON object"),
        ("text", None, "the response body holds a str"),
    ],
)
def test_bad_record_shapes_fail_clearly(body: Any, path: str | None, message: str) -> None:
    with pytest.raises(ResponseError) as info:
        extract_records(body, path, "here")
    assert message in str(info.value)


def test_data_path_error_names_stream_page_and_url(
    api_server: ApiServer, client: httpx.Client
) -> None:
    api_server.route("/orders", sequence(Reply({"data": ITEMS[:2]}), Reply({"error": "x"})))
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/orders",
            "data_path": "data",
            "pagination": {"type": "offset", "page_size": 2},
        },
    )
    api, _ = make_api(client, api_server.url)
    with pytest.raises(ResponseError) as info:
        read_all(spec, api)
    assert str(info.value).startswith(
        f"stream items, page 2 ({api_server.url}/orders?offset=2&limit=2): data_path 'data' "
        "is not in the response (an object with keys error)"
    )


# --- resume and limits ---------------------------------------------------------------------


def test_resume_continues_after_the_last_page_read(
    api_server: ApiServer, client: httpx.Client
) -> None:
    api_server.route("/orders", offset_api)
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/orders",
            "data_path": "data",
            "pagination": {"type": "offset", "page_size": 2},
        },
    )
    api, _ = make_api(client, api_server.url)
    [first] = read_all(spec, api, max_pages=1)
    assert ids([first]) == [1, 2] and first.next_state["offset"] == 2
    rest = read_all(spec, api, resume=first.next_state)
    assert ids(rest) == [3, 4, 5] and [p.number for p in rest] == [1, 2]


def test_resume_a_link_header_stream(api_server: ApiServer, client: httpx.Client) -> None:
    github_repos(api_server)
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/user/repos",
            "params": {"per_page": 2},
            "pagination": {"type": "link_header"},
        },
    )
    api, _ = make_api(client, api_server.url)
    first = read_all(spec, api, max_pages=2)
    assert ids(read_all(spec, api, resume=first[-1].next_state)) == [5]


def test_a_resume_point_from_another_pagination_kind_is_refused(
    api_server: ApiServer, client: httpx.Client
) -> None:
    spec = make_spec(
        api_server.url, {"endpoint": "/orders", "pagination": {"type": "offset", "page_size": 2}}
    )
    api, _ = make_api(client, api_server.url)
    with pytest.raises(SourceError, match="does not fit its pagination"):
        read_all(spec, api, resume={"url": "http://x"})


# --- faults during a stream ----------------------------------------------------------------


def test_a_503_mid_stream_is_retried_and_nothing_is_lost(
    api_server: ApiServer, client: httpx.Client
) -> None:
    calls = {"n": 0}

    def flaky(req: RecordedRequest) -> Reply:
        calls["n"] += 1
        return Reply(status=503) if calls["n"] == 2 else offset_api(req)

    api_server.route("/orders", flaky)
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/orders",
            "data_path": "data",
            "pagination": {"type": "offset", "page_size": 2},
        },
    )
    api, rec = make_api(client, api_server.url)
    assert ids(read_all(spec, api)) == [1, 2, 3, 4, 5] and rec.sleeps == [0.5]


def test_html_maintenance_page_fails_the_stream_after_retries(
    api_server: ApiServer, client: httpx.Client
) -> None:
    api_server.route(
        "/orders", lambda req: Reply("<html>down</html>", headers={"Content-Type": "text/html"})
    )
    spec = make_spec(api_server.url, {"endpoint": "/orders"})
    api, _ = make_api(client, api_server.url, rate_limit=RateLimit(max_retries=2))
    with pytest.raises(RetriableError, match="failed after 3 attempts: HTTP 200 with a body"):
        read_all(spec, api)


# --- loop guards ---------------------------------------------------------------------------


def test_a_token_sent_twice_stops_the_stream(api_server: ApiServer, client: httpx.Client) -> None:
    tokens = iter(["a", "b", "a"])
    api_server.route(
        "/feed", lambda req: Reply({"data": [{"id": req.params.get("c")}], "next": next(tokens)})
    )
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/feed",
            "data_path": "data",
            "pagination": {"type": "cursor", "cursor_path": "next", "param": "c"},
        },
    )
    api, _ = make_api(client, api_server.url)
    with pytest.raises(PaginationLoopError) as info:
        read_all(spec, api)
    assert str(info.value) == (
        "stream items: the API sent next-page token 'a' twice (page 3); "
        "stopping to avoid an infinite loop"
    )


def test_an_api_ignoring_the_offset_is_caught(api_server: ApiServer, client: httpx.Client) -> None:
    api_server.route("/orders", lambda req: Reply({"data": ITEMS[:2]}))
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/orders",
            "data_path": "data",
            "pagination": {"type": "offset", "page_size": 2},
        },
    )
    api, _ = make_api(client, api_server.url)
    with pytest.raises(PaginationLoopError, match="page 2 .* exactly the same 2 records"):
        read_all(spec, api)
    assert len(api_server.requests) == 2


# --- credentials only go to base_url's origin ----------------------------------------------


def test_a_next_url_on_another_origin_gets_no_credentials(
    api_server: ApiServer, other_server: ApiServer, client: httpx.Client
) -> None:
    elsewhere = f"{other_server.url}/tickets?page=2&api_key={SECRET}"
    api_server.route("/tickets", lambda req: Reply({"tickets": ITEMS[:2], "next": elsewhere}))
    other_server.route("/tickets", lambda req: Reply({"tickets": ITEMS[2:], "next": None}))
    spec = make_spec(
        api_server.url,
        {
            "endpoint": "/tickets",
            "data_path": "tickets",
            "pagination": {"type": "next_url", "next_url_path": "next"},
        },
    )
    for auth in (QueryKeyTestAuth(), BearerTestAuth()):
        api, _ = make_api(client, api_server.url, auth=auth)
        pages = read_all(spec, api)
        assert ids(pages) == [1, 2, 3, 4, 5]
        assert pages[0].raw_next == f"{other_server.url}/tickets?page=2"
        assert SECRET not in str(pages[0].next_state)
    own, foreign = api_server.requests, other_server.requests
    assert own[0].params == {"api_key": SECRET}
    assert own[1].header("authorization") == f"Bearer {SECRET}"
    for request in foreign:
        assert request.params == {"page": "2"} and request.header("authorization") is None


def test_a_link_header_to_another_origin_gets_no_credentials(
    api_server: ApiServer, other_server: ApiServer, client: httpx.Client
) -> None:
    link = f'<{other_server.url}/repos?page=2>; rel="next"'
    api_server.route("/repos", lambda req: Reply(ITEMS[:2], headers={"Link": link}))
    other_server.route("/repos", lambda req: Reply(ITEMS[2:]))
    spec = make_spec(api_server.url, {"endpoint": "/repos", "pagination": {"type": "link_header"}})
    api, _ = make_api(client, api_server.url, auth=BearerTestAuth())
    assert ids(read_all(spec, api)) == [1, 2, 3, 4, 5]
    assert api_server.requests[0].header("authorization") == f"Bearer {SECRET}"
    assert other_server.requests[0].header("authorization") is None
