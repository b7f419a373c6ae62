"""The example specs of examples/ against faithful fakes of the real services.

Each fake (tests/support/services/) answers in its service's documented wire format, with
its caps and quirks, and holds a ground-truth dataset. Each test connects the example
spec pointed at the fake, syncs, and checks that the tables equal the ground truth; then
the fake's data changes, a second sync runs, and the test checks that the incremental
request carried the filter in the API's own format (Stripe `created[gte]` in epoch
seconds, a JQL clause with `yyyy-MM-dd HH:mm`, a SOQL literal, a Notion body filter,
GitLab `updated_after`, Shopify `updated_at_min` on the first page only) and that the
tables equal the new ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from tests.e2e.helpers import Cli, rows, status_streams
from tests.support.api_server import ApiServer, RecordedRequest
from tests.support.services import parse_iso
from tests.support.services.gitlab import GitLab
from tests.support.services.jira import Jira
from tests.support.services.notion import Notion
from tests.support.services.salesforce import QUERY_PATH, Salesforce
from tests.support.services.shopify import ORDERS_PATH, Shopify
from tests.support.services.slack import Slack
from tests.support.services.stripe import Stripe

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WriteSpec = Callable[..., Path]
Row = dict[str, Any]


def example(name: str, base_url: str) -> dict[str, Any]:
    """The example spec with `base_url` pointing at a fake. The fakes have no quota, so the
    request rate cap is dropped (Slack's 0.3/s would make the test wait minutes); retries
    are kept as the example sets them."""
    spec: dict[str, Any] = orjson.loads((EXAMPLES / name / "spec.json").read_bytes())
    spec["base_url"] = base_url
    if isinstance(spec.get("rate_limit"), dict):
        spec["rate_limit"] = {
            k: v for k, v in spec["rate_limit"].items() if k not in ("requests_per_second", "burst")
        }
    return spec


def stream(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in spec["streams"] if s["name"] == name)


def sync(cli: Cli, name: str, *args: str) -> None:
    done = cli("connections", "sync", name, *args)
    assert done.code == 0, done.out + done.err


def moment(value: str | int) -> datetime:
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    parsed = parse_iso(value)
    assert parsed is not None, value
    return parsed


def maybe_moment(value: str | None) -> datetime | None:
    return None if value is None else moment(value)


def table(connection: str, name: str, key: Iterable[str], json: Iterable[str] = ()) -> list[Row]:
    """The landed rows (user columns), JSON columns parsed, sorted by `key`."""
    keys, json_columns = list(key), set(json)
    landed = rows(connection, name, order_by=None)
    for row in landed:
        for column in json_columns & row.keys():
            if isinstance(row[column], str):
                row[column] = orjson.loads(row[column])
    return sorted(landed, key=lambda r: tuple(r[k] for k in keys))


def ordered(expected: Iterable[Row], key: Iterable[str]) -> list[Row]:
    keys = list(key)
    return sorted(expected, key=lambda r: tuple(r[k] for k in keys))


def since(server: ApiServer, mark: int, path: str) -> list[RecordedRequest]:
    """Requests to `path` received after the first `mark` requests."""
    return [r for r in list(server.requests)[mark:] if r.path == path]


# --- Stripe -------------------------------------------------------------------------------


def stripe_customers(stripe: Stripe) -> list[Row]:
    return [
        {
            "id": c["id"],
            "email": c["email"],
            "name": c["name"],
            "currency": c["currency"],
            "delinquent": c["delinquent"],
            "balance": c["balance"],
            "address_country": c["address"]["country"] if c["address"] else None,
            "default_source": stripe.cards[c["default_source"]] if c["default_source"] else None,
            "metadata": c["metadata"],
            "created": moment(c["created"]),
            "livemode": c["livemode"],
        }
        for c in stripe.customers
    ]


def stripe_charges(stripe: Stripe) -> list[Row]:
    fields = ["id", "amount", "amount_refunded", "currency", "status", "paid", "refunded"]
    return [
        {**{f: c[f] for f in fields}, "customer": c["customer"], "created": moment(c["created"])}
        for c in stripe.charges
    ]


def assert_stripe_tables(stripe: Stripe) -> None:
    json = ["default_source", "metadata"]
    assert table("stripe", "customers", ["id"], json) == ordered(stripe_customers(stripe), ["id"])
    assert table("stripe", "charges", ["id"]) == ordered(stripe_charges(stripe), ["id"])


def test_stripe_customers_and_charges(
    cli: Cli, write_spec: WriteSpec, api_server: ApiServer
) -> None:
    stripe = Stripe(api_server)
    path = write_spec(example("stripe", api_server.url))
    assert cli("connect", "stripe", "--spec", str(path), "--auth-token", stripe.token).code == 0

    sync(cli, "stripe")

    assert_stripe_tables(stripe)
    first = stripe.requests("/v1/customers")
    assert all(r.header("stripe-version") == "2024-06-20" for r in first)
    assert all(r.query["expand[]"] == ["data.default_source"] for r in first)
    assert all(r.params["limit"] == "100" for r in first)
    assert "created[gte]" not in first[0].params  # first sync: the bare {{cursor}} is left out
    newest_first = [c["id"] for c in reversed(stripe.customers)]
    afters = [r.params.get("starting_after") for r in first]
    assert afters == [None] + [newest_first[100 * n - 1] for n in range(1, len(first))]
    latest = {
        "/v1/customers": max(c["created"] for c in stripe.customers),
        "/v1/charges": max(c["created"] for c in stripe.charges),
    }
    mark = len(api_server.requests)

    stripe.mutate()
    sync(cli, "stripe")

    for endpoint, cursor in latest.items():
        again = since(api_server, mark, endpoint)
        # epoch seconds, the greatest `created` landed (Stripe lists newest first)
        assert again and all(r.params["created[gte]"] == str(cursor) for r in again)
    assert_stripe_tables(stripe)
    status = status_streams(cli, "stripe")
    assert moment(status["customers"]["cursor"]) == moment(
        max(c["created"] for c in stripe.customers)
    )

    # an edit: `created` does not move, so only a full refresh can see it
    stripe.customers[0]["email"] = "new-address@example.com"
    mark = len(api_server.requests)
    sync(cli, "stripe", "--full-refresh")

    full = since(api_server, mark, "/v1/customers")
    assert "created[gte]" not in full[0].params  # everything is read again
    assert_stripe_tables(stripe)


# --- Slack --------------------------------------------------------------------------------


def slack_users(slack: Slack) -> list[Row]:
    return [
        {
            "id": u["id"],
            "name": u["name"],
            "real_name": u["real_name"],
            "deleted": u["deleted"],
            "is_admin": u["is_admin"],
            "is_bot": u["is_bot"],
            "tz": u["tz"],
            "profile_email": u["profile"]["email"],
            "updated": moment(u["updated"]),
        }
        for u in slack.users
    ]


def slack_channels(slack: Slack) -> list[Row]:
    return [
        {
            "id": c["id"],
            "name": c["name"],
            "is_archived": c["is_archived"],
            "num_members": c["num_members"],
            "topic_value": c["topic"]["value"],
            "purpose_value": c["purpose"]["value"],
            "created": moment(c["created"]),
        }
        for c in slack.channels
    ]


def test_slack_users_and_channels(cli: Cli, write_spec: WriteSpec, api_server: ApiServer) -> None:
    slack = Slack(api_server)
    path = write_spec(example("slack", f"{api_server.url}/api"))
    assert cli("connect", "slack", "--spec", str(path), "--auth-token", slack.token).code == 0

    sync(cli, "slack")

    assert table("slack", "users", ["id"]) == ordered(slack_users(slack), ["id"])
    assert table("slack", "channels", ["id"]) == ordered(slack_channels(slack), ["id"])
    walk = slack.requests("/api/users.list")
    assert len(walk) == 3  # 420 users, at most 170 a page whatever `limit` asks
    assert "cursor" not in walk[0].params and all(r.params.get("cursor") for r in walk[1:])
    assert all(r.header("authorization") == f"Bearer {slack.token}" for r in walk)

    slack.mutate()
    sync(cli, "slack")

    assert table("slack", "users", ["id"]) == ordered(slack_users(slack), ["id"])
    assert table("slack", "channels", ["id"]) == ordered(slack_channels(slack), ["id"])


def test_slack_ratelimited_call_is_made_again_after_retry_after(
    cli: Cli, write_spec: WriteSpec, api_server: ApiServer
) -> None:
    slack = Slack(api_server)
    slack.throttle = {2}  # the second users.list page: 429, Retry-After: 1, "ratelimited"
    path = write_spec(example("slack", f"{api_server.url}/api"))
    assert cli("connect", "slack", "--spec", str(path), "--auth-token", slack.token).code == 0

    sync(cli, "slack")

    assert table("slack", "users", ["id"]) == ordered(slack_users(slack), ["id"])
    walk = slack.requests("/api/users.list")
    assert len(walk) == 4
    assert walk[1].params["cursor"] == walk[2].params["cursor"]  # the same page, again
    assert walk[2].at - walk[1].at >= 0.9  # after the wait Slack asked for


def test_slack_invalid_auth_fails_the_sync_and_says_why(
    cli: Cli, write_spec: WriteSpec, api_server: ApiServer
) -> None:
    Slack(api_server)
    path = write_spec(example("slack", f"{api_server.url}/api"))
    assert cli("connect", "slack", "--spec", str(path), "--auth-token", "xoxb-revoked").code == 0

    done = cli("connections", "sync", "slack")

    assert done.code == 1, done.out + done.err
    assert "invalid_auth" in done.out + done.err
    for name in ("users", "channels"):
        stream_status = status_streams(cli, "slack")[name]
        assert stream_status["status"] == "failed"
        assert "invalid_auth" in stream_status["error"]
        assert stream_status["rows"] in (0, None)


# --- Notion -------------------------------------------------------------------------------


def notion_pages(notion: Notion) -> list[Row]:
    return [
        {
            "id": p["id"],
            "created_time": moment(p["created_time"]),
            "last_edited_time": moment(p["last_edited_time"]),
            "archived": p["archived"],
            "url": p["url"],
            "properties": p["properties"],
        }
        for p in notion.pages
    ]


def notion_spec(notion: Notion, base_url: str) -> dict[str, Any]:
    spec = example("notion", base_url)
    pages = stream(spec, "pages")
    pages["endpoint"] = pages["endpoint"].replace("YOUR-DATABASE-ID", notion.database_id)
    return spec


def test_notion_database_query(cli: Cli, write_spec: WriteSpec, api_server: ApiServer) -> None:
    notion = Notion(api_server)
    path = write_spec(notion_spec(notion, api_server.url))
    assert cli("connect", "notion", "--spec", str(path), "--auth-token", notion.token).code == 0

    sync(cli, "notion")

    key = ["id"]
    assert table("notion", "pages", key, ["properties"]) == ordered(notion_pages(notion), key)
    walk = notion.requests(notion.query_path)
    assert len(walk) == 4  # 330 pages, 100 a page
    assert all(r.method == "POST" and r.header("notion-version") == "2022-06-28" for r in walk)
    bodies = [r.json() for r in walk]
    assert all(b["page_size"] == 100 for b in bodies)
    assert "start_cursor" not in bodies[0]
    in_order = sorted(notion.pages, key=lambda p: p["last_edited_time"])  # stable, as Notion
    by_position = {p["id"]: n for n, p in enumerate(in_order)}
    assert [by_position[b["start_cursor"]] for b in bodies[1:]] == [100, 200, 300]
    first_filter = bodies[0]["filter"]
    assert first_filter["timestamp"] == "last_edited_time"
    start = first_filter["last_edited_time"]["on_or_after"]
    assert moment(start) == datetime(2000, 1, 1, tzinfo=UTC)  # cursor_start
    latest = max(moment(p["last_edited_time"]) for p in notion.pages)
    mark = len(api_server.requests)

    notion.mutate()
    sync(cli, "notion")

    again = since(api_server, mark, notion.query_path)
    assert again and all(r.header("notion-version") == "2022-06-28" for r in again)
    filtered = again[0].json()["filter"]["last_edited_time"]["on_or_after"]
    assert moment(filtered) == latest
    assert len(again) == 1  # 40 edited and 25 new pages (and the cursor's minute) fit one page
    assert table("notion", "pages", key, ["properties"]) == ordered(notion_pages(notion), key)


# --- Jira ---------------------------------------------------------------------------------


def jira_issues(jira: Jira) -> list[Row]:
    out = []
    for issue in jira.issues("ABC"):
        fields = issue["fields"]
        assignee = fields["assignee"]
        out.append(
            {
                "id": issue["id"],
                "key": issue["key"],
                "summary": fields["summary"],
                "status_name": fields["status"]["name"],
                "assignee_accountId": assignee["accountId"] if assignee else None,
                "created": moment(fields["created"]),
                "updated": moment(fields["updated"]),
            }
        )
    return out


def jira_projects(jira: Jira) -> list[Row]:
    names = ["id", "key", "name", "projectTypeKey", "isPrivate"]
    return [{n: p[n] for n in names} for p in jira.projects]


JQL = 'project = ABC AND updated >= "{}" ORDER BY updated ASC'


def test_jira_jql_incremental(cli: Cli, write_spec: WriteSpec, api_server: ApiServer) -> None:
    jira = Jira(api_server)
    path = write_spec(example("jira", api_server.url))
    connect = ["--auth-user", jira.email, "--auth-pass", jira.token]
    assert cli("connect", "jira", "--spec", str(path), *connect).code == 0

    sync(cli, "jira")

    assert table("jira", "projects", ["id"]) == ordered(jira_projects(jira), ["id"])
    assert table("jira", "issues", ["id"]) == ordered(jira_issues(jira), ["id"])
    walk = jira.requests("/rest/api/3/search")
    assert all(r.params["jql"] == JQL.format("2000-01-01 00:00") for r in walk)
    total = len(jira.issues("ABC"))
    # maxResults=100 is asked, Jira answers 50: the walk advances by what it received
    assert [int(r.params["startAt"]) for r in walk] == list(range(0, total, 50))
    assert all(r.params["maxResults"] == "100" for r in walk)
    latest = max(moment(i["fields"]["updated"]) for i in jira.issues("ABC"))
    mark = len(api_server.requests)

    jira.mutate()
    sync(cli, "jira")

    again = since(api_server, mark, "/rest/api/3/search")
    assert again and all(r.params["jql"] == JQL.format(f"{latest:%Y-%m-%d %H:%M}") for r in again)
    assert table("jira", "issues", ["id"]) == ordered(jira_issues(jira), ["id"])
    assert status_streams(cli, "jira")["issues"]["warnings"] == []


def test_jira_enhanced_search_with_next_page_token(
    cli: Cli, write_spec: WriteSpec, api_server: ApiServer
) -> None:
    """The stream as examples/jira/README.md says to change it where Atlassian has removed
    `/rest/api/3/search` (410 Gone): `/rest/api/3/search/jql` and its `nextPageToken`."""
    jira = Jira(api_server, removed_search=True)
    spec = example("jira", api_server.url)
    issues = stream(spec, "issues")
    issues["endpoint"] = "/rest/api/3/search/jql"
    issues["params"]["maxResults"] = 100
    issues["pagination"] = {
        "type": "cursor",
        "cursor_path": "nextPageToken",
        "param": "nextPageToken",
    }
    path = write_spec(spec)
    connect = ["--auth-user", jira.email, "--auth-pass", jira.token]
    assert cli("connect", "jira", "--spec", str(path), *connect).code == 0

    sync(cli, "jira")

    assert table("jira", "issues", ["id"]) == ordered(jira_issues(jira), ["id"])
    walk = jira.requests("/rest/api/3/search/jql")
    assert len(walk) == 3  # 220 issues, 100 a page
    assert all(r.params["jql"] == JQL.format("2000-01-01 00:00") for r in walk)
    assert "nextPageToken" not in walk[0].params
    assert all(r.params["nextPageToken"] for r in walk[1:])
    latest = max(moment(i["fields"]["updated"]) for i in jira.issues("ABC"))
    mark = len(api_server.requests)

    jira.mutate()
    sync(cli, "jira")

    again = since(api_server, mark, "/rest/api/3/search/jql")
    assert again and all(r.params["jql"] == JQL.format(f"{latest:%Y-%m-%d %H:%M}") for r in again)
    assert table("jira", "issues", ["id"]) == ordered(jira_issues(jira), ["id"])
    assert not jira.requests("/rest/api/3/search")


# --- GitLab -------------------------------------------------------------------------------


def gitlab_projects(gitlab: GitLab) -> list[Row]:
    return [
        {
            "id": p["id"],
            "name": p["name"],
            "path_with_namespace": p["path_with_namespace"],
            "archived": p["archived"],
            "visibility": p["visibility"],
            "created_at": moment(p["created_at"]),
            "last_activity_at": moment(p["last_activity_at"]),
            "web_url": p["web_url"],
        }
        for p in gitlab.projects
    ]


def gitlab_issues(gitlab: GitLab) -> list[Row]:
    return [
        {
            "id": i["id"],
            "iid": i["iid"],
            "project_id": i["project_id"],
            "title": i["title"],
            "state": i["state"],
            "labels": i["labels"],
            "author_id": i["author"]["id"],
            "author_username": i["author"]["username"],
            "created_at": moment(i["created_at"]),
            "updated_at": moment(i["updated_at"]),
            "closed_at": maybe_moment(i["closed_at"]),
        }
        for i in gitlab.issues
    ]


def gitlab_assignees(gitlab: GitLab) -> list[Row]:
    return [
        {"issue_id": i["id"], "id": a["id"], "username": a["username"], "name": a["name"]}
        for i in gitlab.issues
        for a in i["assignees"]
    ]


def assert_gitlab_tables(connection: str, gitlab: GitLab) -> None:
    assert table(connection, "projects", ["id"]) == ordered(gitlab_projects(gitlab), ["id"])
    assert table(connection, "issues", ["id"], ["labels"]) == ordered(gitlab_issues(gitlab), ["id"])
    pair = ["issue_id", "id"]
    assert table(connection, "issues_assignees", pair) == ordered(gitlab_assignees(gitlab), pair)


def test_gitlab_projects_and_their_issues(
    cli: Cli, write_spec: WriteSpec, api_server: ApiServer
) -> None:
    gitlab = GitLab(api_server)
    path = write_spec(example("gitlab", f"{api_server.url}/api/v4"))
    assert cli("connect", "gitlab", "--spec", str(path), "--auth-token", gitlab.token).code == 0

    sync(cli, "gitlab")

    assert_gitlab_tables("gitlab", gitlab)
    status = status_streams(cli, "gitlab")
    assert status["issues"]["status"] == "succeeded"  # the 404 project is an empty list
    big, gone = gitlab.projects[0]["id"], next(iter(gitlab.gone))
    pages = [r.params.get("page") for r in gitlab.requests(f"/api/v4/projects/{big}/issues")]
    assert pages == [None, "2", "3"]  # X-Next-Page, 230 issues at 100 a page
    assert len(gitlab.requests(f"/api/v4/projects/{gone}/issues")) == 1
    children = [r for r in gitlab.requests() if r.path.endswith("/issues")]
    assert len({r.path for r in children}) == len(gitlab.projects)  # one walk per project
    assert all(r.header("private-token") == gitlab.token for r in gitlab.requests())
    assert all("updated_after" not in r.params for r in children)
    latest = gitlab.latest_update()
    mark = len(api_server.requests)

    gitlab.mutate()
    sync(cli, "gitlab")

    again = [r for r in list(api_server.requests)[mark:] if r.path.endswith("/issues")]
    assert len({r.path for r in again}) == len(gitlab.projects)  # the new project included
    assert all(moment(r.params["updated_after"]) == latest for r in again)
    assert_gitlab_tables("gitlab", gitlab)


# --- Salesforce ---------------------------------------------------------------------------


def salesforce_accounts(sf: Salesforce) -> list[Row]:
    return [
        {
            "Id": a["Id"],
            "Name": a["Name"],
            "Industry": a["Industry"],
            "AnnualRevenue": a["AnnualRevenue"],
            "NumberOfEmployees": a["NumberOfEmployees"],
            "CreatedDate": moment(a["CreatedDate"]),
            "LastModifiedDate": moment(a["LastModifiedDate"]),
        }
        for a in sf.accounts
    ]


SOQL = (
    "SELECT Id, Name, Industry, AnnualRevenue, NumberOfEmployees, CreatedDate, "
    "LastModifiedDate FROM Account WHERE LastModifiedDate >= {} ORDER BY LastModifiedDate"
)


def test_salesforce_soql_incremental(
    cli: Cli, write_spec: WriteSpec, api_server: ApiServer
) -> None:
    sf = Salesforce(api_server)
    spec = example("salesforce", api_server.url)
    spec["auth"]["token_url"] = sf.token_url
    accounts = stream(spec, "accounts")
    accounts["headers"] = {"Sforce-Query-Options": "batchSize=200"}  # several batches of 450
    path = write_spec(spec)
    connect = ["--client-id", sf.client_id, "--client-secret", sf.client_secret]
    connect += ["--refresh-token", sf.refresh_token]
    assert cli("connect", "salesforce", "--spec", str(path), *connect).code == 0

    sync(cli, "salesforce")

    assert table("salesforce", "accounts", ["Id"]) == ordered(salesforce_accounts(sf), ["Id"])
    [query] = sf.requests(QUERY_PATH)
    assert query.params["q"] == SOQL.format("2000-01-01T00:00:00Z")
    assert query.header("sforce-query-options") == "batchSize=200"
    more = [r for r in sf.requests() if r.path.startswith(f"{QUERY_PATH}/")]
    assert len(more) == 2 and all(not r.query for r in more)  # the relative locator, as is
    assert all(r.header("authorization") == f"Bearer {sf.access_tokens[-1]}" for r in more)
    latest = sf.latest_update()
    mark = len(api_server.requests)

    sf.mutate()
    sync(cli, "salesforce")

    [again] = since(api_server, mark, QUERY_PATH)
    reread = latest - timedelta(seconds=300)  # cursor_lookback
    assert again.params["q"] == SOQL.format(f"{reread:%Y-%m-%dT%H:%M:%SZ}")
    assert table("salesforce", "accounts", ["Id"]) == ordered(salesforce_accounts(sf), ["Id"])


def test_salesforce_session_expiring_mid_walk_is_refreshed(
    cli: Cli, write_spec: WriteSpec, api_server: ApiServer
) -> None:
    sf = Salesforce(api_server)
    sf.session_calls = 2  # the query and one locator page; the next call answers 401
    spec = example("salesforce", api_server.url)
    spec["auth"]["token_url"] = sf.token_url
    stream(spec, "accounts")["headers"] = {"Sforce-Query-Options": "batchSize=200"}
    path = write_spec(spec)
    connect = ["--client-id", sf.client_id, "--client-secret", sf.client_secret]
    connect += ["--refresh-token", sf.refresh_token]
    assert cli("connect", "salesforce", "--spec", str(path), *connect).code == 0

    sync(cli, "salesforce")

    assert table("salesforce", "accounts", ["Id"]) == ordered(salesforce_accounts(sf), ["Id"])
    more = [r for r in sf.requests() if r.path.startswith(f"{QUERY_PATH}/")]
    assert len(more) == 3  # the refused locator page, asked again with the new token
    assert more[1].path == more[2].path
    assert more[2].header("authorization") == f"Bearer {sf.access_tokens[-1]}"
    assert sf.expired and sf.access_tokens[-1] not in sf.expired


# --- Shopify ------------------------------------------------------------------------------


def shopify_orders(shop: Shopify) -> list[Row]:
    return [
        {
            "id": o["id"],
            "order_number": o["name"],
            "email": o["email"],
            "financial_status": o["financial_status"],
            "fulfillment_status": o["fulfillment_status"],
            "currency": o["currency"],
            "total_price": float(o["total_price"]),
            "subtotal_price": float(o["subtotal_price"]),
            "total_tax": float(o["total_tax"]),
            "customer_id": o["customer"]["id"],
            "shipping_address_country_code": o["shipping_address"]["country_code"],
            "created_at": moment(o["created_at"]),
            "updated_at": moment(o["updated_at"]),
            "cancelled_at": maybe_moment(o["cancelled_at"]),
        }
        for o in shop.orders
    ]


def shopify_line_items(shop: Shopify) -> list[Row]:
    return [
        {
            "order_id": o["id"],
            "id": i["id"],
            "product_id": i["product_id"],
            "variant_id": i["variant_id"],
            "sku": i["sku"],
            "title": i["title"],
            "quantity": i["quantity"],
            "price": float(i["price"]),
        }
        for o in shop.orders
        for i in o["line_items"]
    ]


def assert_shopify_tables(shop: Shopify) -> None:
    assert table("shop", "orders", ["id"]) == ordered(shopify_orders(shop), ["id"])
    items = table("shop", "orders_line_items", ["id"])
    assert items == ordered(shopify_line_items(shop), ["id"])


def test_shopify_orders_with_page_info(
    cli: Cli, write_spec: WriteSpec, api_server: ApiServer
) -> None:
    shop = Shopify(api_server)
    path = write_spec(example("shopify", api_server.url))
    assert cli("connect", "shop", "--spec", str(path), "--auth-token", shop.token).code == 0

    sync(cli, "shop")

    assert_shopify_tables(shop)
    walk = shop.requests(ORDERS_PATH)
    assert len(walk) == 2  # 320 orders, 250 a page
    first = walk[0].params
    assert first == {"status": "any", "limit": "250", "order": "updated_at asc"}
    assert set(walk[1].params) == {"limit", "page_info"}  # anything else is a 400
    latest = shop.latest_update()
    mark = len(api_server.requests)

    shop.mutate()
    sync(cli, "shop")

    again = since(api_server, mark, ORDERS_PATH)
    assert moment(again[0].params["updated_at_min"]) == latest
    assert all(set(r.params) == {"limit", "page_info"} for r in again[1:])
    assert_shopify_tables(shop)
