"""A bad spec is refused with one line per problem: JSON path, what is wrong, how to fix it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from rawquery_workers.errors import SpecError
from rawquery_workers.spec import load_spec_file, parse_spec

BASE: dict[str, Any] = {
    "version": "1",
    "base_url": "https://api.example.com/v1",
    "auth": {"type": "bearer"},
    "streams": [{"name": "users", "endpoint": "/users", "primary_key": ["id"]}],
}
GRAPHQL: dict[str, Any] = {
    "version": "1",
    "base_url": "https://api.example.com",
    "type": "graphql",
    "auth": {"type": "bearer"},
    "streams": [{"name": "repos", "query": "query { viewer { id } }"}],
}
AUTH_TYPES = "expected one of none, api_key, bearer, basic, oauth2, custom"
PAGINATION_TYPES = "expected one of offset, cursor, page_number, link_header, next_url"
COLUMN_TYPES = "string, integer, float, boolean, timestamp, date, json"
STREAM_FIELDS = (
    "name, endpoint, method, headers, body, data_path, primary_key, cursor_field, "
    "cursor_lookback, cursor_start, cursor_format, error_path, ignore_status, parent, "
    "pagination, params, query, variables, sync_modes, flatten, expand, fields, types, "
    "partition_by, sort_by"
)
NAME_RULE = "use letters, digits and '_', not starting with a digit (it becomes the table name)"
TEMPLATE_NAMES = "{{auth.username}}, {{auth.password}}, {{auth.token}}"
CREDENTIALS_HINT = (
    "credentials never go in the spec: give them to `rq connect` (--auth-token, "
    "--auth-user/--auth-pass, or --client-id/--client-secret/--refresh-token)"
)


def top(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    spec.update(changes)
    return spec


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in BASE.items() if k != key}


def stream(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    spec["streams"][0].update(changes)
    return {**spec, "streams": [{k: v for k, v in spec["streams"][0].items() if v is not None}]}


def graphql_stream(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(GRAPHQL)
    spec["streams"][0].update(changes)
    return {**spec, "streams": [{k: v for k, v in spec["streams"][0].items() if v is not None}]}


EXPAND = {"items": {"primary_key": "id", "parent_key": "user_id"}}

CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    # --- top level
    (
        "unknown top-level key that belongs in a stream",
        top(pagination={"type": "offset"}),
        [
            "pagination: unknown field; 'pagination' is a stream field; "
            "put it inside an entry of 'streams'"
        ],
    ),
    (
        "typo in a top-level key",
        top(rate_limits={}),
        ["rate_limits: unknown field; did you mean 'rate_limit'?"],
    ),
    (
        "unknown top-level key",
        top(extra=True),
        [
            "extra: unknown field; expected one of version, base_url, type, auth, streams, "
            "rate_limit, headers, error_path, concurrency"
        ],
    ),
    ("no requests in flight", top(concurrency=0), ["concurrency: must be at least 1, got 0"]),
    (
        "more requests in flight than any API allows",
        top(concurrency=65),
        ["concurrency: must be at most 64, got 65"],
    ),
    (
        "concurrency given twice, differently",
        top(concurrency=4, rate_limit={"concurrency": 2}),
        ["rate_limit.concurrency: is 2 but the top-level concurrency is 4; give it once"],
    ),
    ("bad version", top(version="2"), ["version: must be '1', got '2'"]),
    ("version as a number", top(version=1), ["version: must be '1', got 1"]),
    ("missing version", without("version"), ["version: required"]),
    ("missing auth", without("auth"), ["auth: required"]),
    (
        "bad base_url",
        top(base_url="api.example.com"),
        ["base_url: 'api.example.com' is not an absolute http(s) URL"],
    ),
    ("unknown api type", top(type="soap"), ["type: 'soap' is not one of rest, graphql"]),
    # --- auth
    (
        "unknown auth type",
        top(auth={"type": "bearr"}),
        [f"auth.type: unknown auth type 'bearr'; {AUTH_TYPES}; did you mean 'bearer'?"],
    ),
    ("auth without type", top(auth={"header": "X"}), [f"auth.type: required; {AUTH_TYPES}"]),
    ("auth as a string", top(auth="bearer"), ["auth: expected an object, got a string"]),
    (
        "api_key with header and query_param",
        top(auth={"type": "api_key", "header": "X-Key", "query_param": "key"}),
        ["auth: api_key auth needs exactly one of 'header' or 'query_param'"],
    ),
    (
        "api_key with neither header nor query_param",
        top(auth={"type": "api_key"}),
        ["auth: api_key auth needs exactly one of 'header' or 'query_param'"],
    ),
    (
        "typo in an auth key",
        top(auth={"type": "api_key", "headr": "X-Key"}),
        ["auth.headr: unknown field; did you mean 'header'?"],
    ),
    (
        "a token written into the spec",
        top(auth={"type": "bearer", "token": "s3cr3t-t0ken"}),
        [f"auth.token: unknown field; {CREDENTIALS_HINT}"],
    ),
    (
        "oauth2 without token_url",
        top(auth={"type": "oauth2", "grant_type": "refresh_token"}),
        ["auth.token_url: required"],
    ),
    (
        "oauth2 with a bad grant_type",
        top(auth={"type": "oauth2", "token_url": "https://p.example/t", "grant_type": "password"}),
        ["auth.grant_type: 'password' is not one of refresh_token, client_credentials"],
    ),
    (
        "oauth2 with a relative token_url",
        top(auth={"type": "oauth2", "token_url": "/oauth/token"}),
        ["auth.token_url: '/oauth/token' is not an absolute http(s) URL"],
    ),
    (
        "custom extract path not starting with response.",
        top(
            auth={
                "type": "custom",
                "pre_request": {
                    "url": "https://api.example.com/session",
                    "extract": {"session_token": "body.token"},
                },
                "headers": {"X-Session-Token": "{{session_token}}"},
            }
        ),
        ["auth.pre_request.extract.session_token: path 'body.token' must start with 'response.'"],
    ),
    (
        "unknown template name in custom headers",
        top(auth={"type": "custom", "headers": {"X-Token": "{{auth.tokn}}"}}),
        [
            "auth.headers.X-Token: unknown template '{{auth.tokn}}'; "
            f"expected one of {TEMPLATE_NAMES}"
        ],
    ),
    (
        "unknown template name in a custom login body",
        top(
            auth={
                "type": "custom",
                "pre_request": {"url": "https://api.example.com/s", "body": {"u": "{{user}}"}},
            }
        ),
        [
            "auth.pre_request.body.u: unknown template '{{user}}'; "
            f"expected one of {TEMPLATE_NAMES}"
        ],
    ),
    # --- pagination
    (
        "unknown pagination type",
        stream(pagination={"type": "pages"}),
        [f"streams[0].pagination.type: unknown pagination type 'pages'; {PAGINATION_TYPES}"],
    ),
    (
        "pagination without type",
        stream(pagination={"param": "page"}),
        [f"streams[0].pagination.type: required; {PAGINATION_TYPES}"],
    ),
    (
        "cursor pagination missing cursor_path",
        stream(pagination={"type": "cursor", "param": "cursor"}),
        ["streams[0].pagination.cursor_path: give exactly one of 'cursor_path', 'cursor_header'"],
    ),
    (
        "REST cursor pagination without param",
        stream(pagination={"type": "cursor", "cursor_path": "meta.next"}),
        [
            "streams[0].pagination.param: REST cursor pagination needs 'param' (the query "
            "parameter that carries the cursor) or 'body_path' (where it goes in the JSON body)"
        ],
    ),
    (
        "page_size 0",
        stream(pagination={"type": "offset", "page_size": 0}),
        ["streams[0].pagination.page_size: must be at least 1, got 0"],
    ),
    (
        "page_size not a number",
        stream(pagination={"type": "page_number", "page_size": "fifty"}),
        ['streams[0].pagination.page_size: expected an integer, got "fifty"'],
    ),
    (
        "page_size_param without page_size",
        stream(pagination={"type": "page_number", "page_size_param": "per_page"}),
        ["streams[0].pagination.page_size: is required when page_size_param is set"],
    ),
    # --- GraphQL and REST rules
    (
        "GraphQL stream without query",
        graphql_stream(query=None),
        ["streams[0].query: a GraphQL stream needs a 'query'"],
    ),
    (
        "GraphQL cursor pagination without cursor_variable",
        graphql_stream(pagination={"type": "cursor", "cursor_path": "data.x.pageInfo.endCursor"}),
        [
            "streams[0].pagination.cursor_variable: GraphQL cursor pagination needs "
            "'cursor_variable'"
        ],
    ),
    (
        "GraphQL with offset pagination",
        graphql_stream(pagination={"type": "offset"}),
        [
            "streams[0].pagination.type: GraphQL streams paginate with type 'cursor' (Relay), "
            "not 'offset'"
        ],
    ),
    (
        "GraphQL variable template other than {{cursor}}",
        graphql_stream(variables={"org": "{{org}}"}),
        [
            "streams[0].variables.org: unknown template '{{org}}'; stream variables may only "
            "use {{cursor}}"
        ],
    ),
    (
        "REST stream without endpoint",
        stream(endpoint=None),
        ["streams[0].endpoint: a REST stream needs an 'endpoint' (e.g. \"/users\")"],
    ),
    (
        "REST stream with query",
        stream(query="{ users { id } }"),
        [
            'streams[0].query: \'query\' is only for GraphQL specs (set "type": "graphql" at '
            "the top level)"
        ],
    ),
    (
        "REST stream with variables",
        stream(variables={"first": 10}),
        ["streams[0].variables: 'variables' is only for GraphQL specs"],
    ),
    (
        "endpoint on another host",
        stream(endpoint="https://evil.example.com/users"),
        [
            "streams[0].endpoint: 'https://evil.example.com/users' is not on base_url's host; "
            'use a path such as "/users"'
        ],
    ),
    # --- streams
    ("empty streams", top(streams=[]), ["streams: must not be empty"]),
    (
        "streams not a list",
        top(streams={"name": "users"}),
        ['streams: expected a list, got {"name":"users"}'],
    ),
    (
        "a stream that is a string",
        top(streams=["users"]),
        ['streams[0]: expected an object, got "users"'],
    ),
    (
        "typo in a stream key",
        stream(paramz={"limit": 10}),
        ["streams[0].paramz: unknown field; did you mean 'params'?"],
    ),
    (
        "unknown stream key with no close match",
        stream(zzz=1),
        [f"streams[0].zzz: unknown field; expected one of {STREAM_FIELDS}"],
    ),
    (
        "top-level key inside a stream",
        stream(rate_limit={}),
        [
            "streams[0].rate_limit: unknown field; 'rate_limit' is a top-level field of the "
            "spec, not of a stream"
        ],
    ),
    ("stream without name", stream(name=None), ["streams[0].name: required"]),
    (
        "bad stream name characters",
        stream(name="user-list"),
        [f"streams[0].name: 'user-list' is not a valid stream name; {NAME_RULE}"],
    ),
    (
        "stream name starting with a digit",
        stream(name="2users"),
        [f"streams[0].name: '2users' is not a valid stream name; {NAME_RULE}"],
    ),
    (
        "bad HTTP method",
        stream(method="DELETE"),
        ["streams[0].method: 'DELETE' is not one of GET, POST, PUT, PATCH"],
    ),
    (
        "primary_key as a string",
        stream(primary_key="id"),
        ['streams[0].primary_key: expected a list, got "id"'],
    ),
    (
        "params value that is an object",
        stream(params={"ids": {"a": 1}}),
        ['streams[0].params.ids: expected a string, a number, a boolean or a list, got {"a":1}'],
    ),
    (
        "params template other than {{cursor}}",
        stream(params={"token": "{{auth.token}}"}),
        [
            "streams[0].params.token: unknown template '{{auth.token}}'; stream params may "
            "only use {{cursor}}"
        ],
    ),
    (
        "{{cursor}} without cursor_field",
        stream(params={"since": "{{cursor}}"}),
        [
            "streams[0].params.since: '{{cursor}}' needs the stream's 'cursor_field' (the saved "
            "cursor it stands for)"
        ],
    ),
    (
        "sync_modes incremental without cursor_field",
        stream(sync_modes=["incremental"]),
        ["streams[0].sync_modes: 'incremental' needs a 'cursor_field'"],
    ),
    (
        "unknown sync mode",
        stream(sync_modes=["incremental_append"]),
        [
            "streams[0].sync_modes[0]: 'incremental_append' is not one of full_refresh, "
            "incremental; did you mean 'incremental'?"
        ],
    ),
    (
        "empty sync_modes",
        stream(sync_modes=[]),
        ["streams[0].sync_modes: must list at least one of full_refresh, incremental"],
    ),
    # --- transformations
    (
        "expand without primary_key",
        stream(primary_key=[], expand=EXPAND),
        [
            "streams[0].expand: 'expand' needs the stream's 'primary_key' (child rows point at "
            "their parent by it)"
        ],
    ),
    (
        "expand primary_key with a number",
        stream(expand={"items": {"primary_key": ["id", 3], "parent_key": "user_id"}}),
        ["streams[0].expand.items.primary_key[1]: expected a string, got 3"],
    ),
    (
        "expand missing parent_key",
        stream(expand={"items": {"primary_key": "id"}}),
        ["streams[0].expand.items.parent_key: required"],
    ),
    (
        "parent_key equal to the child's primary key",
        stream(expand={"items": {"primary_key": "id", "parent_key": "id"}}),
        [
            "streams[0].expand.items.parent_key: 'id' is also the child's primary_key; pick a "
            "distinct column name"
        ],
    ),
    (
        "a field both flattened and expanded",
        stream(flatten={"items": "prefix"}, expand=EXPAND),
        ["streams[0].expand.items: a field cannot be both flattened and expanded"],
    ),
    (
        "bad types values",
        stream(types={"amount": "xml", "count": "integr"}),
        [
            f"streams[0].types.amount: 'xml' is not one of {COLUMN_TYPES}",
            f"streams[0].types.count: 'integr' is not one of {COLUMN_TYPES}; "
            "did you mean 'integer'?",
        ],
    ),
    (
        "bad flatten mode",
        stream(flatten={"address": "nested"}),
        ["streams[0].flatten.address: 'nested' is not one of prefix, lift, json"],
    ),
    (
        "rename to duplicate targets",
        stream(fields={"rename": {"first": "name", "last": "name"}}),
        ["streams[0].fields.rename: two fields are renamed to 'name'"],
    ),
    (
        "rename to a reserved name",
        stream(fields={"rename": {"id": "_rq_id"}}),
        [
            "streams[0].fields.rename.id: names starting with '_rq_' are reserved for columns "
            "rawquery adds"
        ],
    ),
    (
        "fields.include not a list",
        stream(fields={"include": "id"}),
        ['streams[0].fields.include: expected a list, got "id"'],
    ),
    # --- table names
    (
        "duplicate stream names (case-insensitive)",
        top(streams=[{"name": "users", "endpoint": "/a"}, {"name": "Users", "endpoint": "/b"}]),
        ["streams[1].name: table name 'Users' is already used by streams[0].name"],
    ),
    (
        "child table name collision",
        top(
            streams=[
                {"name": "orders", "endpoint": "/o", "primary_key": ["id"], "expand": EXPAND},
                {"name": "orders_items", "endpoint": "/oi"},
            ]
        ),
        ["streams[1].name: table name 'orders_items' is already used by streams[0].expand.items"],
    ),
    # --- rate limits
    (
        "negative max_retries",
        top(rate_limit={"max_retries": -1}),
        ["rate_limit.max_retries: must be at least 0, got -1"],
    ),
    (
        "retry_on 200",
        top(rate_limit={"retry_on": [429, 200]}),
        ["rate_limit.retry_on[1]: must be at least 400, got 200"],
    ),
    (
        "requests_per_second 0",
        top(rate_limit={"requests_per_second": 0}),
        ["rate_limit.requests_per_second: must be greater than 0, got 0"],
    ),
    (
        "unknown backoff",
        top(rate_limit={"backoff": "exponentail"}),
        [
            "rate_limit.backoff: 'exponentail' is not one of exponential, linear, constant; "
            "did you mean 'exponential'?"
        ],
    ),
    # --- several problems at once, in document order
    (
        "many problems at once",
        {
            "version": "2",
            "base_url": "https://api.example.com",
            "auth": {"type": "oauth"},
            "streams": [
                {"name": "a", "endpoint": "/a", "pagination": {"type": "pages"}},
                {"name": "b b", "endpointt": "/b"},
            ],
            "rate_limit": {"requests_per_second": -1, "retry_on": [200]},
            "extra": True,
        },
        [
            "version: must be '1', got '2'",
            f"auth.type: unknown auth type 'oauth'; {AUTH_TYPES}; did you mean 'oauth2'?",
            f"streams[0].pagination.type: unknown pagination type 'pages'; {PAGINATION_TYPES}",
            f"streams[1].name: 'b b' is not a valid stream name; {NAME_RULE}",
            "streams[1].endpointt: unknown field; did you mean 'endpoint'?",
            "rate_limit.requests_per_second: must be greater than 0, got -1",
            "rate_limit.retry_on[0]: must be at least 400, got 200",
            "extra: unknown field; expected one of version, base_url, type, auth, streams, "
            "rate_limit, headers, error_path, concurrency",
        ],
    ),
    (
        "problems in document order, not model order",
        {
            "streams": [{"types": {"a": "xml"}, "name": "u-1", "endpoint": "/u"}],
            "auth": {"type": "nope"},
            "base_url": "ftp://files.example.com",
            "version": "1",
        },
        [
            f"streams[0].types.a: 'xml' is not one of {COLUMN_TYPES}",
            f"streams[0].name: 'u-1' is not a valid stream name; {NAME_RULE}",
            f"auth.type: unknown auth type 'nope'; {AUTH_TYPES}; did you mean 'none'?",
            "base_url: 'ftp://files.example.com' is not an absolute http(s) URL",
        ],
    ),
    (
        "several rule violations in one stream",
        stream(
            primary_key=[],
            expand=EXPAND,
            sync_modes=["incremental"],
            query="{ x }",
            params={"a": "{{b}}"},
        ),
        [
            "streams[0].expand: 'expand' needs the stream's 'primary_key' (child rows point at "
            "their parent by it)",
            "streams[0].sync_modes: 'incremental' needs a 'cursor_field'",
            'streams[0].query: \'query\' is only for GraphQL specs (set "type": "graphql" at '
            "the top level)",
            "streams[0].params.a: unknown template '{{b}}'; stream params may only use {{cursor}}",
        ],
    ),
]


# --- the Extensions of spec version 1 (INTERFACE.md)
EXTENSION_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "parents that form a cycle",
        top(
            streams=[
                {"name": "a", "endpoint": "/a/{{parent.id}}", "parent": {"stream": "b"}},
                {"name": "b", "endpoint": "/b/{{parent.id}}", "parent": {"stream": "a"}},
            ]
        ),
        [
            "streams[0].parent.stream: parents form a cycle through 'b'",
            "streams[1].parent.stream: parents form a cycle through 'a'",
        ],
    ),
    (
        "body with GET",
        stream(body={"a": 1}),
        ["streams[0].body: a request body needs 'method' POST, PUT or PATCH, not GET"],
    ),
    (
        "body_path with GET",
        stream(pagination={"type": "cursor", "cursor_path": "next", "body_path": "start"}),
        [
            "streams[0].pagination.body_path: 'body_path' puts the token into the JSON body: set 'method' POST, PUT or PATCH"  # noqa: E501
        ],
    ),
    (
        "both cursor_path and cursor_header",
        stream(
            pagination={
                "type": "cursor",
                "cursor_path": "next",
                "cursor_header": "X-Next",
                "param": "p",
            }
        ),
        ["streams[0].pagination.cursor_path: give exactly one of 'cursor_path', 'cursor_header'"],
    ),
    (
        "both param and body_path",
        stream(
            method="POST",
            pagination={"type": "cursor", "cursor_path": "n", "param": "p", "body_path": "s"},
        ),
        [
            "streams[0].pagination.body_path: give one of 'param', 'body_path' (where the token goes)"  # noqa: E501
        ],
    ),
    (
        "next_url with neither path nor header",
        stream(pagination={"type": "next_url"}),
        [
            "streams[0].pagination.next_url_path: give exactly one of 'next_url_path', 'next_url_header'"  # noqa: E501
        ],
    ),
    (
        "next_url with both",
        stream(
            pagination={"type": "next_url", "next_url_path": "next", "next_url_header": "X-Next"}
        ),
        [
            "streams[0].pagination.next_url_path: give exactly one of 'next_url_path', 'next_url_header'"  # noqa: E501
        ],
    ),
    (
        "embedded cursor without cursor_start",
        stream(cursor_field="updated", params={"jql": "updated >= '{{cursor}}'"}),
        [
            "streams[0].params.jql: '{{cursor}}' inside a longer value needs the stream's 'cursor_start' (the value it takes on a first sync), or the whole value would be left out"  # noqa: E501
        ],
    ),
    (
        "embedded cursor in body without cursor_start",
        stream(method="POST", cursor_field="u", body={"filter": {"after": "ts>{{cursor}}"}}),
        [
            "streams[0].body.filter: '{{cursor}}' inside a longer value needs the stream's 'cursor_start' (the value it takes on a first sync), or the whole value would be left out"  # noqa: E501
        ],
    ),
    (
        "cursor_start without cursor_field",
        stream(cursor_start="2024-01-01"),
        ["streams[0].cursor_start: needs a 'cursor_field' (it is about the saved cursor)"],
    ),
    (
        "unknown cursor_format",
        stream(cursor_field="u", cursor_format="unix"),
        [
            "streams[0].cursor_format: 'unix' is not a cursor format; use one of iso8601, epoch_seconds, epoch_millis, date or a strftime pattern"  # noqa: E501
        ],
    ),
    (
        "cursor_start that cannot be written as epoch",
        stream(cursor_field="u", cursor_format="epoch_seconds", cursor_start="yesterday"),
        [
            "streams[0].cursor_start: 'yesterday' must be an ISO 8601 date or timestamp (or a number) to be written as epoch_seconds"  # noqa: E501
        ],
    ),
    (
        "parent template without parent",
        stream(endpoint="/p/{{parent.id}}/x"),
        [
            "streams[0].endpoint: unknown template '{{parent.id}}'; stream endpoint takes no templates (set the stream's 'parent')"  # noqa: E501
        ],
    ),
    (
        "parent naming an unknown stream",
        stream(parent={"stream": "nope", "fields": {"user_id": "id"}}),
        ["streams[0].parent.stream: 'nope' is not another stream of this spec (streams: none)"],
    ),
    (
        "parent naming itself",
        stream(parent={"stream": "users"}),
        ["streams[0].parent.stream: 'users' is not another stream of this spec (streams: none)"],
    ),
    (
        "cursor template in endpoint",
        stream(endpoint="/x/{{cursor}}", cursor_field="u"),
        ["streams[0].endpoint: unknown template '{{cursor}}'; stream endpoint takes no templates"],
    ),
    (
        "Authorization header",
        top(headers={"Authorization": "Bearer abc"}),
        [
            "headers.Authorization: 'Authorization' carries credentials: use 'auth' (stored encrypted)"  # noqa: E501
        ],
    ),
    (
        "template in a top-level header",
        top(headers={"X-Id": "{{parent.id}}"}),
        ["headers.X-Id: top-level headers take no templates (a stream's headers may)"],
    ),
    (
        "ignore_status below 400",
        stream(ignore_status=[200]),
        ["streams[0].ignore_status[0]: must be at least 400, got 200"],
    ),
    (
        "graphql body",
        graphql_stream(body={"a": 1}),
        ["streams[0].body: 'body' is only for REST specs"],
    ),
    ("error_path empty", top(error_path=""), ["error_path: must not be empty"]),
    (
        "partition_by entries that are not partitions",
        stream(partition_by=["week(created_at)", "day()", "day(a)(b)", ""]),
        [
            f"streams[0].partition_by[{n}]: '{entry}' is not a partition; use a column name "
            '(one partition per value), "day(COLUMN)" or "month(COLUMN)"'
            for n, entry in enumerate(["week(created_at)", "day()", "day(a)(b)", ""])
        ],
    ),
    (
        "partition_by on a column twice, and on one of the wrong declared type",
        stream(partition_by=["day(at)", "month(at)", "month(n)"], types={"n": "integer"}),
        [
            "streams[0].partition_by[1]: 'at' is partitioned twice; keep one entry",
            "streams[0].partition_by[2]: month() needs a timestamp or date column; "
            "'types' declares 'n' integer",
        ],
    ),
    (
        "partition_by a declared timestamp itself",
        stream(partition_by=["at"], types={"at": "timestamp"}),
        [
            "streams[0].partition_by[0]: 'at' is a timestamp: one partition per instant; "
            'use "day(at)" or "month(at)"'
        ],
    ),
    (
        "partition_by and sort_by naming columns the table will not have",
        stream(
            partition_by=["_rq_key", "items"],
            sort_by=["id", "name", "id"],
            expand=EXPAND,
            fields={"include": ["email"]},
        ),
        [
            "streams[0].partition_by[0]: '_rq_key' is a system column; of those only "
            "_rq_synced_at may be named here",
            "streams[0].partition_by[1]: 'items' is expanded into the child table users_items",
            "streams[0].sort_by[1]: 'name' is left out by fields.include; add it there",
            "streams[0].sort_by[2]: 'id' is named twice; keep one",
        ],
    ),
    (
        "last_record without field",
        stream(pagination={"type": "cursor", "cursor_path": "last_record", "param": "p"}),
        ["streams[0].pagination.cursor_path: name the field: 'last_record.id'"],
    ),
]

CASES += EXTENSION_CASES


@pytest.mark.parametrize(("spec", "lines"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_spec_reports_every_problem(spec: dict[str, Any], lines: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec, source="spec.json")
    assert info.value.problems == lines
    assert info.value.source == "spec.json"
    assert info.value.exit_code == 2
    assert str(info.value) == "spec.json: " + "\n".join(lines)


def test_case_table_is_big_enough() -> None:
    assert len(CASES) >= 35
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("value", "kind"),
    [([1, 2], "a list"), ("{not json", "a string"), (None, "null"), (3, "an integer")],
)
def test_top_level_must_be_an_object(value: object, kind: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(value)
    assert info.value.problems == [f"top level: expected a JSON object {{...}}, got {kind}"]


# --- secrets never appear in messages -----------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        top(auth={"type": "api_key", "header": ["hunter2-secret"]}),
        top(auth={"type": "custom", "headers": {"Authorization": 123456789}}),
        top(auth={"type": "custom", "params": {"key": ["hunter2-secret"]}}),
        top(
            auth={
                "type": "custom",
                "pre_request": {"url": "https://api.example.com/s", "headers": {"X": 123456789}},
            }
        ),
        top(
            auth={"type": "oauth2", "token_url": "https://p.example/t", "scopes": "hunter2-secret"}
        ),
        stream(params={"api_key": [["hunter2-secret"]]}),
        stream(params={"access_token": {"v": "hunter2-secret"}}),
        top(auth={"type": "basic", "password": "hunter2-secret"}),
    ],
)
def test_values_that_may_be_secrets_are_not_echoed(spec: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    message = str(info.value)
    assert "hunter2" not in message and "123456789" not in message
    assert len(info.value.problems) == 1


def test_auth_type_errors_say_the_kind_not_the_value() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(top(auth={"type": "custom", "headers": {"Authorization": 123456789}}))
    assert info.value.problems == ["auth.headers.Authorization: expected a string, got an integer"]


# --- files -----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(SpecError) as info:
        load_spec_file(path)
    assert info.value.problems == ["no such file"]
    assert str(info.value) == f"{path}: no such file"


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec_file(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a spec file"


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ('{\n  "version": "1",\n  "base_url": }\n', 3, 15),
        ('{\n  "version": "1",\n  "streams": [\n    {"name": "a",}\n  ]\n}', 4, 17),
        ('{"version": "1"', 1, 16),
        ("", 1, 1),
    ],
)
def test_malformed_json_gives_line_and_column(
    tmp_path: Path, text: str, line: int, column: int
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec_file(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:{line}:{column}: invalid JSON: ")
    assert len(problem) > len(f"{path}:{line}:{column}: invalid JSON: ")
    assert str(info.value) == problem


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text('{"version": "1", "streams": [], "streams": []}')
    with pytest.raises(SpecError) as info:
        load_spec_file(path)
    assert str(info.value) == f"{path}: invalid JSON: key 'streams' appears twice in one object"


def test_file_problems_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(top(version="2")))
    with pytest.raises(SpecError) as info:
        load_spec_file(path)
    assert info.value.source == str(path)
    assert str(info.value) == f"{path}: version: must be '1', got '2'"


def test_top_level_array_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text("[]")
    with pytest.raises(SpecError) as info:
        load_spec_file(path)
    assert str(info.value) == f"{path}: top level: expected a JSON object {{...}}, got a list"
