"""Every spec under examples/ is valid and documented; a few are read end to end (with
`preview_spec`) against a local server answering in the real API's shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from rawquery_workers.authoring.preview import preview_spec
from rawquery_workers.spec.credentials import Credentials
from rawquery_workers.spec.loading import load_spec_file, parse_spec
from rawquery_workers.spec.models import Spec
from tests.support.api_server import ApiServer, RecordedRequest, Reply

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPECS = sorted(EXAMPLES.glob("*/spec.json"))
FLAGS = {
    "none": [],
    "bearer": ["--auth-token"],
    "api_key": ["--auth-token"],
    "basic": ["--auth-user", "--auth-pass"],
    "oauth2": ["--client-id", "--client-secret", "--refresh-token"],
    "custom": ["--auth-user", "--auth-pass"],
}


def on_server(path: Path, server: ApiServer) -> Spec:
    """The example spec with its base_url pointing at the local server."""
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    data["base_url"] = server.url
    return parse_spec(data, source=str(path))


def test_the_well_known_apis_are_there() -> None:
    names = {p.parent.name for p in SPECS}
    assert {
        "github_rest",
        "github_graphql",
        "hubspot",
        "zendesk",
        "shopify",
        "metabase_session",
        "stripe",
        "slack",
        "jira",
        "notion",
        "gitlab",
        "salesforce",
    } <= names


@pytest.mark.parametrize("path", SPECS, ids=[p.parent.name for p in SPECS])
def test_example_is_valid_and_has_a_readme(path: Path) -> None:
    spec = load_spec_file(path)
    readme = (path.parent / "README.md").read_text()
    assert readme.startswith("# ")
    assert "Credentials:" in readme
    for flag in FLAGS[spec.auth.type]:
        assert flag in readme, f"{path.parent.name}/README.md does not mention {flag}"
    assert f"examples/{path.parent.name}/spec.json" in readme


def test_stripe_starting_after_and_has_more(api_server: ApiServer) -> None:
    customers = [
        {"id": f"cus_{i}", "email": f"c{i}@x.io", "created": 1700000000 + i} for i in range(5)
    ]

    def handler(request: RecordedRequest) -> Reply:
        after = request.params.get("starting_after")
        start = 0 if after is None else [c["id"] for c in customers].index(after) + 1
        page = customers[start : start + 2]
        return Reply(body={"object": "list", "data": page, "has_more": start + 2 < 5})

    api_server.route("/v1/customers", handler)
    spec = on_server(EXAMPLES / "stripe/spec.json", api_server)
    result = preview_spec(
        spec, Credentials(token="sk_test_123456"), streams=["customers"], max_pages=5
    )
    [stream] = result.streams
    assert stream.error is None
    assert [p.records for p in stream.pages] == [2, 2, 1]
    assert [p.next for p in stream.pages] == ["cus_1", "cus_3", None]
    columns = {c.name: c.type for c in stream.tables[0].columns}
    assert columns["created"] == "timestamptz"
    assert stream.hints == []


def test_shopify_orders_line_items_child_table(api_server: ApiServer) -> None:
    order = {
        "id": 450789469,
        "name": "#1001",
        "email": "bob@example.com",
        "total_price": "598.94",
        "customer": {"id": 207119551, "email": "bob@example.com"},
        "created_at": "2024-01-10T11:00:00-05:00",
        "updated_at": "2024-01-11T11:00:00-05:00",
        "line_items": [
            {"id": 466157049, "sku": "IPOD2008GREEN", "quantity": 1, "price": "199.00"},
            {"id": 518995019, "sku": "IPOD2008RED", "quantity": 2, "price": "199.97"},
        ],
    }

    def handler(request: RecordedRequest) -> Reply:
        if request.params.get("page_info"):
            return Reply(body={"orders": [{**order, "id": 2, "line_items": []}]})
        link = f'<{api_server.url}{request.path}?limit=250&page_info=abc>; rel="next"'
        return Reply(body={"orders": [order]}, headers={"Link": link})

    api_server.route("/admin/api/2024-10/orders.json", handler)
    spec = on_server(EXAMPLES / "shopify/spec.json", api_server)
    [stream] = preview_spec(spec, Credentials(token="shpat_abcdef")).streams
    assert stream.error is None and stream.records == 2
    orders, items = stream.tables
    assert orders.name == "orders" and items.name == "orders_line_items"
    assert items.parent_key == "order_id" and items.rows == 2
    order_types = {c.name: c.type for c in orders.columns}
    assert order_types["total_price"] == "double" and order_types["updated_at"] == "timestamptz"
    assert "order_number" in order_types and "customer_id" in order_types
    item_types = {c.name: c.type for c in items.columns}
    assert item_types["price"] == "double" and item_types["order_id"] == "long"
    sent = api_server.requests[0]
    assert sent.header("x-shopify-access-token") == "shpat_abcdef"
    assert "updated_at_min" not in sent.params  # first sync: {{cursor}} is left out


def test_notion_query_posts_its_body_and_the_version_header(api_server: ApiServer) -> None:
    from tests.support.services.notion import Notion

    notion = Notion(api_server)
    data: dict[str, Any] = orjson.loads((EXAMPLES / "notion/spec.json").read_bytes())
    data["base_url"] = api_server.url
    endpoint = data["streams"][0]["endpoint"]
    data["streams"][0]["endpoint"] = endpoint.replace("YOUR-DATABASE-ID", notion.database_id)
    spec = parse_spec(data, source="notion")
    [stream] = preview_spec(spec, Credentials(token=notion.token)).streams
    assert stream.error is None
    assert [p.records for p in stream.pages] == [100, 100]
    first, second = notion.requests(notion.query_path)
    assert first.method == "POST" and first.header("notion-version") == "2022-06-28"
    assert "start_cursor" not in first.json()
    assert second.json()["start_cursor"] == stream.pages[0].next


def test_gitlab_issues_are_read_per_project(api_server: ApiServer) -> None:
    from tests.support.services.gitlab import GitLab

    gitlab = GitLab(api_server)
    data: dict[str, Any] = orjson.loads((EXAMPLES / "gitlab/spec.json").read_bytes())
    data["base_url"] = f"{api_server.url}/api/v4"
    spec = parse_spec(data, source="gitlab")
    projects, issues = preview_spec(spec, Credentials(token=gitlab.token)).streams
    assert projects.error is None and issues.error is None
    assert [t.name for t in issues.tables] == ["issues", "issues_assignees"]
    first = next(r for r in gitlab.requests() if r.path.endswith("/issues"))
    assert first.path == f"/api/v4/projects/{gitlab.projects[0]['id']}/issues"
    assert first.header("private-token") == gitlab.token
