"""Every example spec of the product doc validates, round-trips, and `rq spec` reports it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rawquery_workers.cli import spec_cmd
from rawquery_workers.errors import SpecError
from rawquery_workers.spec import load_spec_file, parse_spec, spec_json_schema, spec_to_json
from rawquery_workers.spec.models import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    CursorPagination,
    CustomAuth,
    LinkHeaderPagination,
    NextUrlPagination,
    OAuth2Auth,
    OffsetPagination,
    PageNumberPagination,
)

QUICK_START: dict[str, Any] = {
    "version": "1",
    "base_url": "https://api.example.com/v1",
    "auth": {"type": "bearer"},
    "streams": [
        {"name": "users", "endpoint": "/users", "data_path": "data", "primary_key": ["id"]}
    ],
}

AUTH_SNIPPETS: dict[str, tuple[dict[str, Any], type]] = {
    "api_key_header": ({"type": "api_key", "header": "X-API-Key"}, ApiKeyAuth),
    "api_key_query": ({"type": "api_key", "query_param": "api_key"}, ApiKeyAuth),
    "bearer": ({"type": "bearer"}, BearerAuth),
    "basic": ({"type": "basic"}, BasicAuth),
    "oauth2": (
        {
            "type": "oauth2",
            "token_url": "https://provider.com/oauth/token",
            "refresh_url": "https://provider.com/oauth/token",
            "grant_type": "refresh_token",
        },
        OAuth2Auth,
    ),
    "custom": (
        {
            "type": "custom",
            "pre_request": {
                "url": "https://api.example.com/auth/session",
                "method": "POST",
                "body": {"username": "{{auth.username}}", "password": "{{auth.password}}"},
                "extract": {"session_token": "response.token"},
            },
            "headers": {"X-Session-Token": "{{session_token}}"},
        },
        CustomAuth,
    ),
}

PAGINATION_SNIPPETS: dict[str, tuple[dict[str, Any], type]] = {
    "offset": (
        {"type": "offset", "param": "offset", "limit_param": "limit", "page_size": 100},
        OffsetPagination,
    ),
    "cursor": (
        {"type": "cursor", "cursor_path": "meta.next_cursor", "param": "cursor"},
        CursorPagination,
    ),
    "page_number": (
        {
            "type": "page_number",
            "param": "page",
            "page_size_param": "per_page",
            "page_size": 50,
            "start_page": 1,
        },
        PageNumberPagination,
    ),
    "link_header": ({"type": "link_header"}, LinkHeaderPagination),
    "next_url": ({"type": "next_url", "next_url_path": "paging.next"}, NextUrlPagination),
}

TRANSFORM_SNIPPETS: dict[str, dict[str, Any]] = {
    "flatten": {"flatten": {"address": "prefix", "metadata": "lift", "raw_json": "json"}},
    "expand": {"expand": {"line_items": {"primary_key": "id", "parent_key": "order_id"}}},
    "fields": {
        "fields": {
            "include": ["id", "name", "email", "created_at"],
            "rename": {"created_at": "created_date", "id": "external_id"},
        }
    },
    "types": {
        "types": {
            "created_at": "timestamp",
            "amount": "float",
            "is_active": "boolean",
            "metadata": "json",
        }
    },
}

GRAPHQL: dict[str, Any] = {
    "version": "1",
    "base_url": "https://api.github.com",
    "type": "graphql",
    "auth": {"type": "bearer"},
    "streams": [
        {
            "name": "repositories",
            "query": "query($cursor: String) { viewer { repositories(first: 100, after: "
            "$cursor) { nodes { id name createdAt stargazerCount } pageInfo { hasNextPage "
            "endCursor } } } }",
            "data_path": "data.viewer.repositories.nodes",
            "pagination": {
                "type": "cursor",
                "cursor_variable": "cursor",
                "cursor_path": "data.viewer.repositories.pageInfo.endCursor",
                "has_more_path": "data.viewer.repositories.pageInfo.hasNextPage",
            },
            "primary_key": ["id"],
        }
    ],
}

RATE_LIMIT: dict[str, Any] = {
    "requests_per_second": 10,
    "retry_on": [429, 500, 502, 503],
    "backoff": "exponential",
    "max_retries": 5,
    "respect_retry_after": True,
}

HUBSPOT: dict[str, Any] = {
    "version": "1",
    "base_url": "https://api.hubspot.com",
    "auth": {
        "type": "oauth2",
        "token_url": "https://api.hubspot.com/oauth/v1/token",
        "refresh_url": "https://api.hubspot.com/oauth/v1/token",
        "grant_type": "refresh_token",
    },
    "rate_limit": {
        "requests_per_second": 10,
        "retry_on": [429, 500, 502, 503],
        "backoff": "exponential",
        "max_retries": 5,
    },
    "streams": [
        {
            "name": "contacts",
            "endpoint": "/crm/v3/objects/contacts",
            "params": {"limit": 100, "properties": "firstname,lastname,email"},
            "pagination": {"type": "cursor", "cursor_path": "paging.next.after", "param": "after"},
            "data_path": "results",
            "primary_key": ["id"],
            "cursor_field": "updatedAt",
            "sync_modes": ["full_refresh", "incremental"],
            "flatten": {"properties": "lift"},
            "fields": {"include": ["id", "firstname", "lastname", "email", "updatedAt"]},
        }
    ],
}


def with_stream(**extra: Any) -> dict[str, Any]:
    spec = copy.deepcopy(QUICK_START)
    spec["streams"][0].update(extra)
    return spec


def test_quick_start() -> None:
    spec = parse_spec(QUICK_START)
    assert spec.type == "rest"
    assert isinstance(spec.auth, BearerAuth)
    stream = spec.stream("users")
    assert (stream.endpoint, stream.data_path, stream.primary_key) == ("/users", "data", ["id"])
    assert stream.pagination is None
    assert spec.retry.max_retries == 5 and spec.retry.retry_on == [429, 500, 502, 503, 504]


@pytest.mark.parametrize("name", AUTH_SNIPPETS)
def test_auth_snippets(name: str) -> None:
    auth, kind = AUTH_SNIPPETS[name]
    spec = parse_spec({**QUICK_START, "auth": auth})
    assert isinstance(spec.auth, kind)


def test_auth_details() -> None:
    header = parse_spec({**QUICK_START, "auth": AUTH_SNIPPETS["api_key_header"][0]}).auth
    assert isinstance(header, ApiKeyAuth) and header.header == "X-API-Key"
    assert header.query_param is None
    custom = parse_spec({**QUICK_START, "auth": AUTH_SNIPPETS["custom"][0]}).auth
    assert isinstance(custom, CustomAuth) and custom.pre_request is not None
    assert custom.pre_request.extract == {"session_token": "response.token"}
    oauth = OAuth2Auth(type="oauth2", token_url="https://p.example/token")
    assert oauth.effective_refresh_url == "https://p.example/token"
    assert oauth.grant_type == "refresh_token"


@pytest.mark.parametrize("name", PAGINATION_SNIPPETS)
def test_pagination_snippets(name: str) -> None:
    pagination, kind = PAGINATION_SNIPPETS[name]
    spec = parse_spec(with_stream(pagination=pagination))
    assert isinstance(spec.streams[0].pagination, kind)
    assert spec.streams[0].pagination.type == name


def test_pagination_defaults() -> None:
    offset = parse_spec(with_stream(pagination={"type": "offset"})).streams[0].pagination
    assert offset == OffsetPagination(type="offset", param="offset", limit_param="limit")
    assert isinstance(offset, OffsetPagination) and offset.page_size == 100
    link = parse_spec(with_stream(pagination={"type": "link_header"})).streams[0].pagination
    assert isinstance(link, LinkHeaderPagination) and link.rel == "next"


@pytest.mark.parametrize("name", TRANSFORM_SNIPPETS)
def test_transformation_snippets(name: str) -> None:
    spec = parse_spec(with_stream(**TRANSFORM_SNIPPETS[name]))
    stream = spec.streams[0]
    assert getattr(stream, name) is not None


def test_expand_adds_a_child_table() -> None:
    spec = parse_spec(with_stream(**TRANSFORM_SNIPPETS["expand"]))
    assert spec.table_names() == ["users", "users_line_items"]
    assert spec.streams[0].expand["line_items"].keys == ["id"]


def test_all_transformations_together() -> None:
    snippets = {k: v for snippet in TRANSFORM_SNIPPETS.values() for k, v in snippet.items()}
    assert parse_spec(with_stream(**snippets)).streams[0].types["amount"] == "float"


def test_graphql_example() -> None:
    spec = parse_spec(GRAPHQL)
    assert spec.type == "graphql"
    stream = spec.streams[0]
    assert stream.endpoint is None and stream.query is not None
    assert isinstance(stream.pagination, CursorPagination)
    assert stream.pagination.cursor_variable == "cursor"


def test_graphql_with_cursor_variables_and_endpoint() -> None:
    spec = copy.deepcopy(GRAPHQL)
    spec["streams"][0].update(
        endpoint="/api/graphql", variables={"since": "{{cursor}}"}, cursor_field="updatedAt"
    )
    assert parse_spec(spec).streams[0].variables == {"since": "{{cursor}}"}


def test_rate_limit_example() -> None:
    spec = parse_spec({**QUICK_START, "rate_limit": RATE_LIMIT})
    assert spec.retry.requests_per_second == 10
    assert spec.retry.retry_on == [429, 500, 502, 503]
    assert spec.retry.effective_burst == 10
    fractional = parse_spec({**QUICK_START, "rate_limit": {"requests_per_second": 0.5}})
    assert fractional.retry.effective_burst == 1


def test_full_hubspot_example() -> None:
    spec = parse_spec(HUBSPOT)
    stream = spec.stream("contacts")
    assert isinstance(spec.auth, OAuth2Auth)
    assert stream.incremental and not stream.full_refresh_only
    assert stream.params == {"limit": 100, "properties": "firstname,lastname,email"}
    assert isinstance(stream.params["limit"], int)
    assert stream.flatten == {"properties": "lift"}


def test_cursor_param_with_cursor_field_and_absolute_endpoint_on_base_host() -> None:
    spec = parse_spec(
        with_stream(
            endpoint="https://api.example.com/v2/users",
            params={"since": "{{cursor}}"},
            cursor_field="updated_at",
        )
    )
    assert spec.streams[0].incremental


def test_partition_by_and_sort_by() -> None:
    spec = parse_spec(
        with_stream(
            partition_by=["status", "day(created_at)", "month(_rq_synced_at)"],
            sort_by=["id", "created_at"],
            types={"created_at": "timestamp"},
        )
    )
    stream = spec.streams[0]
    assert stream.partition_fields == [
        ("identity", "status"),
        ("day", "created_at"),
        ("month", "_rq_synced_at"),
    ]
    assert stream.sort_by == ["id", "created_at"]
    assert parse_spec(with_stream()).streams[0].partition_fields == []


EXAMPLES = {
    "quick_start": QUICK_START,
    "graphql": GRAPHQL,
    "hubspot": HUBSPOT,
    "everything": with_stream(
        pagination=PAGINATION_SNIPPETS["page_number"][0],
        **{k: v for snippet in TRANSFORM_SNIPPETS.values() for k, v in snippet.items()},
    ),
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_round_trip_through_storage(name: str) -> None:
    spec = parse_spec(EXAMPLES[name])
    stored = spec_to_json(spec)
    assert json.loads(json.dumps(stored)) == stored
    assert stored == EXAMPLES[name]  # only what the author wrote, nothing added
    assert parse_spec(stored) == spec


def test_demo_spec_shipped_with_the_package_validates() -> None:
    path = Path(__file__).parent.parent / "rawquery_workers" / "demo" / "shop.json"
    spec = load_spec_file(path)
    assert spec.table_names() == ["orders", "orders_line_items", "customers"]


def test_load_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(HUBSPOT, indent=2))
    assert load_spec_file(path) == parse_spec(HUBSPOT)
    assert load_spec_file(str(path)).streams[0].name == "contacts"


# --- `rq spec` ----------------------------------------------------------------------------

runner = CliRunner()
rq = typer.Typer()
rq.add_typer(spec_cmd.app, name="spec")


def test_cli_validate_prints_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    spec = copy.deepcopy(QUICK_START)
    spec["streams"].append({"name": "teams", "endpoint": "/teams"})
    path.write_text(json.dumps(spec))
    result = runner.invoke(rq, ["spec", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output == f"{path}: valid (2 streams: users, teams)\n"


def test_cli_validate_raises_spec_error_for_the_root_cli_to_report(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(with_stream(pagination={"type": "pages"})))
    result = runner.invoke(rq, ["spec", "validate", str(path)])
    assert isinstance(result.exception, SpecError)
    assert result.exception.exit_code == 2
    assert result.exception.source == str(path)
    assert result.exception.problems == [
        "streams[0].pagination.type: unknown pagination type 'pages'; expected one of "
        "offset, cursor, page_number, link_header, next_url"
    ]


def test_cli_schema_prints_json_schema() -> None:
    result = runner.invoke(rq, ["spec", "schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] and schema["description"]
    text = result.output
    for name in ("api_key", "bearer", "basic", "oauth2", "custom", "none"):
        assert f'"{name}"' in text
    for name in ("offset", "cursor", "page_number", "link_header", "next_url"):
        assert f'"{name}"' in text
    assert schema == spec_json_schema()


def test_schema_describes_the_top_level_and_forbids_unknown_keys() -> None:
    schema = spec_json_schema()
    assert schema["required"] == ["version", "base_url", "auth", "streams"]
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Stream"]["additionalProperties"] is False
    mapping = schema["properties"]["auth"]["discriminator"]["mapping"]
    assert set(mapping) == {"none", "api_key", "bearer", "basic", "oauth2", "custom"}
    stream = schema["$defs"]["Stream"]["properties"]
    assert "description" in stream["cursor_field"]
    assert set(stream["types"]["additionalProperties"]["enum"]) == {
        "string", "integer", "float", "boolean", "timestamp", "date", "json"
    }  # fmt: skip


def test_cli_validate_one_stream(tmp_path: Path) -> None:
    path = tmp_path / "quick.json"
    path.write_text(json.dumps(QUICK_START))
    result = runner.invoke(rq, ["spec", "validate", str(path)])
    assert (result.exit_code, result.output) == (0, f"{path}: valid (1 stream: users)\n")
