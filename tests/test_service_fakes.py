"""The fakes of tests/support/services answer like the real services (read by hand with
httpx, no rawquery code): so a failing end-to-end test points at rawquery, not at a fake."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.api_server import ApiServer
from tests.support.services.gitlab import GitLab
from tests.support.services.jira import Jira
from tests.support.services.notion import Notion
from tests.support.services.salesforce import QUERY_PATH, Salesforce
from tests.support.services.shopify import ORDERS_PATH, Shopify
from tests.support.services.slack import Slack
from tests.support.services.stripe import Stripe


@pytest.fixture
def server() -> Iterator[ApiServer]:
    with ApiServer() as api:
        yield api


def client(server: ApiServer, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=headers, timeout=10)


def test_stripe_pages_filters_and_errors(server: ApiServer) -> None:
    stripe = Stripe(server)
    http = client(server, Authorization=f"Bearer {stripe.token}")
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100, "expand[]": ["data.default_source"]}
    while True:
        body = http.get("/v1/customers", params=params).json()
        seen += body["data"]
        if not body["has_more"]:
            break
        params["starting_after"] = body["data"][-1]["id"]
    assert [c["id"] for c in seen] == [c["id"] for c in reversed(stripe.customers)]
    assert any(isinstance(c["default_source"], dict) for c in seen)
    cut = stripe.customers[100]["created"]
    body = http.get("/v1/customers", params={"limit": 100, "created[gte]": cut}).json()
    assert all(c["created"] >= cut for c in body["data"]) and body["data"]
    bad = http.get("/v1/customers", params={"created[gte]": "2024-01-01T00:00:00Z"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "created[gte]"
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert http.get("/v1/customers", params={"limit": 101}).status_code == 400
    assert http.get("/v1/customers", params={"expand[]": "default_source"}).status_code == 400
    assert http.get("/v1/customers", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_slack_cursor_and_errors_in_200(server: ApiServer) -> None:
    slack = Slack(server)
    http = client(server, Authorization=f"Bearer {slack.token}")
    members: list[dict[str, Any]] = []
    cursor = ""
    while True:
        body = http.get("/api/users.list", params={"limit": 200, "cursor": cursor}).json()
        assert body["ok"] is True
        assert len(body["members"]) <= 170  # fewer than asked, before the end
        members += body["members"]
        cursor = body["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert [m["id"] for m in members] == [u["id"] for u in slack.users]
    wrong = http.get("/api/users.list", headers={"Authorization": "Bearer xoxb-wrong"})
    assert wrong.status_code == 200 and wrong.json() == {"ok": False, "error": "invalid_auth"}
    odd = http.get("/api/users.list", params={"cursor": "bm9wZQ=="}).json()
    assert odd == {"ok": False, "error": "invalid_cursor"}


def test_notion_body_cursor_version_and_filter(server: ApiServer) -> None:
    notion = Notion(server)
    http = client(server, Authorization=f"Bearer {notion.token}")
    missing = http.post(notion.query_path, json={})
    assert missing.status_code == 400
    assert missing.json()["object"] == "error" and missing.json()["code"] == "missing_version"
    http.headers["Notion-Version"] = "2022-06-28"
    ids: list[str] = []
    body: dict[str, Any] = {"page_size": 100}
    while True:
        page = http.post(notion.query_path, json=body).json()
        assert page["object"] == "list"
        ids += [p["id"] for p in page["results"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        body["start_cursor"] = page["next_cursor"]
    assert ids == [p["id"] for p in notion.pages]
    cut = notion.pages[200]["last_edited_time"]
    flt = {"timestamp": "last_edited_time", "last_edited_time": {"on_or_after": cut}}
    found = http.post(notion.query_path, json={"filter": flt}).json()["results"]
    assert found and all(p["last_edited_time"] >= cut for p in found)
    assert all(p["last_edited_time"].endswith(":00.000Z") for p in notion.pages)
    empty = {"timestamp": "last_edited_time", "last_edited_time": {}}
    assert http.post(notion.query_path, json={"filter": empty}).status_code == 400
    assert http.post(notion.query_path, json={"page_size": 101}).status_code == 400


def test_jira_caps_page_size_and_applies_jql(server: ApiServer) -> None:
    jira = Jira(server)
    auth = base64.b64encode(f"{jira.email}:{jira.token}".encode()).decode()
    http = client(server, Authorization=f"Basic {auth}")
    cut = jira.issues("ABC")[150]["fields"]["updated"][:16]  # 2024-01-09T10:00
    jql = f'project = ABC AND updated >= "{cut.replace("T", " ")}" ORDER BY updated ASC'
    got: list[dict[str, Any]] = []
    start = 0
    while True:
        params = {"jql": jql, "startAt": start, "maxResults": 100}
        body = http.get("/rest/api/3/search", params=params).json()
        assert body["maxResults"] == 50
        got += body["issues"]
        start += len(body["issues"])
        if start >= body["total"]:
            break
    expected = [i for i in jira.issues("ABC") if i["fields"]["updated"][:16] >= cut]
    assert {i["id"] for i in got} == {i["id"] for i in expected} and expected
    updated = [i["fields"]["updated"] for i in got]
    assert updated == sorted(updated)
    for broken in (
        'project = ABC AND updated >= "2024-01-20T10:00:00Z"',
        "project = ABC AND AND",
        "project = NOPE",
        "project = ABC ORDER updated",
    ):
        reply = http.get("/rest/api/3/search", params={"jql": broken})
        assert reply.status_code == 400, broken
        assert reply.json()["errorMessages"] and reply.json()["errors"] == {}


def test_gitlab_headers_and_children(server: ApiServer) -> None:
    gitlab = GitLab(server)
    http = client(server, **{"PRIVATE-TOKEN": gitlab.token})
    projects = http.get("/api/v4/projects", params={"per_page": 100, "order_by": "id"})
    assert projects.headers["X-Next-Page"] == "" and projects.headers["X-Total"] == "9"
    big = gitlab.projects[0]["id"]
    page, issues = "1", []
    while page:
        reply = http.get(f"/api/v4/projects/{big}/issues", params={"page": page, "per_page": 500})
        assert len(reply.json()) <= 100
        issues += reply.json()
        page = reply.headers["X-Next-Page"]
    assert len(issues) == 230
    gone = next(iter(gitlab.gone))
    assert http.get(f"/api/v4/projects/{gone}/issues").status_code == 404
    bad = http.get(f"/api/v4/projects/{big}/issues", params={"updated_after": "yesterday"})
    assert bad.status_code == 400 and bad.json() == {"error": "updated_after is invalid"}


def test_salesforce_soql_and_locators(server: ApiServer) -> None:
    sf = Salesforce(server)
    token = httpx.post(
        sf.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": sf.client_id,
            "client_secret": sf.client_secret,
            "refresh_token": sf.refresh_token,
        },
    ).json()["access_token"]
    http = client(
        server, Authorization=f"Bearer {token}", **{"Sforce-Query-Options": "batchSize=200"}
    )
    soql = (
        "SELECT Id, Name, LastModifiedDate FROM Account "
        "WHERE LastModifiedDate >= 2000-01-01T00:00:00Z ORDER BY LastModifiedDate"
    )
    body = http.get(QUERY_PATH, params={"q": soql}).json()
    records = list(body["records"])
    while not body["done"]:
        assert body["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
        body = http.get(body["nextRecordsUrl"]).json()
        records += body["records"]
    assert "nextRecordsUrl" not in body
    assert sorted(r["Id"] for r in records) == sorted(a["Id"] for a in sf.accounts)
    modified = [r["LastModifiedDate"] for r in records]
    assert modified == sorted(modified)
    assert set(records[0]) == {"attributes", "Id", "Name", "LastModifiedDate"}
    quoted = soql.replace("2000-01-01T00:00:00Z", "'2000-01-01T00:00:00Z'")
    reply = http.get(QUERY_PATH, params={"q": quoted})
    assert reply.status_code == 400
    assert reply.json()[0]["errorCode"] == "INVALID_QUERY_FILTER_OPERATOR"
    assert http.get(QUERY_PATH, params={"q": "SELECT FROM"}).status_code == 400


def test_shopify_link_header_and_page_info_rule(server: ApiServer) -> None:
    shop = Shopify(server)
    http = client(server, **{"X-Shopify-Access-Token": shop.token})
    params = {"status": "any", "limit": 250, "order": "updated_at asc"}
    reply = http.get(ORDERS_PATH, params=params)
    orders = reply.json()["orders"]
    link = reply.headers["Link"]
    assert 'rel="next"' in link
    url = link.split(">")[0].lstrip("<")
    assert set(httpx.URL(url).params) == {"limit", "page_info"}
    resent = http.get(url + "&status=any")
    assert resent.status_code == 400
    orders += http.get(url).json()["orders"]
    assert {o["id"] for o in orders} == {o["id"] for o in shop.orders}
    default = http.get(ORDERS_PATH, params={"limit": 250}).json()["orders"]
    assert all(o["cancelled_at"] is None for o in default)  # status=open by default


def test_jira_enhanced_search_and_the_removed_endpoint(server: ApiServer) -> None:
    jira = Jira(server, removed_search=True)
    auth = base64.b64encode(f"{jira.email}:{jira.token}".encode()).decode()
    http = client(server, Authorization=f"Basic {auth}")
    gone = http.get("/rest/api/3/search", params={"jql": "project = ABC"})
    assert gone.status_code == 410 and "/rest/api/3/search/jql" in gone.json()["errorMessages"][0]
    jql = "project = ABC ORDER BY updated ASC"
    params: dict[str, Any] = {"jql": jql, "maxResults": 100, "fields": "summary,updated"}
    ids: list[str] = []
    while True:
        body = http.get("/rest/api/3/search/jql", params=params).json()
        ids += [i["id"] for i in body["issues"]]
        if "nextPageToken" not in body:
            assert body["isLast"] is True
            break
        params["nextPageToken"] = body["nextPageToken"]
    assert sorted(ids) == sorted(i["id"] for i in jira.issues("ABC"))
    bare = http.get("/rest/api/3/search/jql", params={"jql": "project = ABC"}).json()
    assert set(bare["issues"][0]) == {"id"}  # only ids unless fields are asked for
    unbounded = http.get("/rest/api/3/search/jql", params={"jql": "ORDER BY updated"})
    assert unbounded.status_code == 400
