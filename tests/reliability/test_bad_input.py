"""Item 5: hypothesis-generated mutations of valid specs and of CLI argument lists.

A mutated spec fed to `rq spec validate` or `rq connect` exits 0 (still valid) or 2 with
one line per problem naming its JSON path; a random argument list exits 0, 1 or 2 with a
message. Never a traceback, never "internal error".
"""

from __future__ import annotations

import copy
import itertools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.support import rq
from tests.reliability.tally import TALLY

pytestmark = pytest.mark.reliability

SHOP = orjson.loads(resources.files("rawquery_workers.demo").joinpath("shop.json").read_bytes())
BASES: list[dict[str, Any]] = [
    SHOP,
    {
        "version": "1",
        "base_url": "https://api.example.com",
        "type": "graphql",
        "auth": {
            "type": "oauth2",
            "token_url": "https://auth.example.com/token",
            "grant_type": "refresh_token",
            "scopes": ["read"],
        },
        "streams": [
            {
                "name": "repos",
                "query": "query($cursor: String) { repos(after: $cursor) { nodes { id } } }",
                "data_path": "data.repos.nodes",
                "primary_key": ["id"],
                "pagination": {
                    "type": "cursor",
                    "cursor_path": "data.repos.pageInfo.endCursor",
                    "cursor_variable": "cursor",
                    "has_more_path": "data.repos.pageInfo.hasNextPage",
                },
            }
        ],
    },
    {
        "version": "1",
        "base_url": "https://api.example.com/v2",
        "auth": {
            "type": "custom",
            "pre_request": {
                "url": "https://api.example.com/login",
                "body": {"user": "{{auth.username}}", "pass": "{{auth.password}}"},
                "extract": {"session": "response.token"},
            },
            "headers": {"X-Session": "{{session}}"},
        },
        "rate_limit": {"requests_per_second": 2.5, "burst": 3, "backoff": "linear"},
        "streams": [
            {
                "name": "events",
                "endpoint": "/events",
                "params": {"since": "{{cursor}}", "kind": "all"},
                "cursor_field": "ts",
                "sync_modes": ["incremental", "full_refresh"],
                "pagination": {"type": "link_header"},
                "fields": {"include": ["id", "ts"], "rename": {"ts": "at"}},
                "types": {"ts": "timestamp"},
            },
            {
                "name": "pages",
                "endpoint": "/pages",
                "pagination": {"type": "next_url", "next_url_path": "paging.next"},
            },
        ],
    },
]
ENUM_KEYS = {"type", "method", "grant_type", "backoff", "sync_modes"}
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, child in items:
        out += _paths(child, (*prefix, key))
    return out


def _parent(spec: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        spec = spec[key]
    return spec


@st.composite
def mutated_specs(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    touched: set[str] = set()
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(spec)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(spec, path), path[-1]
        kind = draw(st.sampled_from(["drop", "wrong_type", "unknown_key", "bad_enum", "garbage"]))
        if kind == "drop":
            del parent[key]
        elif kind == "wrong_type":
            parent[key] = draw(
                st.sampled_from([1, -5, 2.5, True, None, "x", [], [1], {}, {"a": 1}])
            )
        elif kind == "unknown_key":
            target = parent if isinstance(parent, dict) else spec
            name = draw(st.sampled_from(["extra", "Name", "paginaton", "data-path", "x y", "é"]))
            target[name] = draw(json_values)
            path = (*path[:-1], name) if isinstance(parent, dict) else (name,)
        elif kind == "bad_enum":
            parent[key] = draw(st.sampled_from(["pages", "", "OFFSET", "Bearer", "put", "none "]))
        else:
            parent[key] = draw(json_values)
        touched.add(str(path[0]))
    return spec, touched


def _check(result: Any, touched: set[str]) -> None:
    TALLY.bad_inputs_tried += 1
    assert "Traceback" not in result.text, result.text
    assert "internal error" not in result.text, result.text
    assert result.code in (0, 2), result.text
    if result.code == 2:
        lines = [line for line in result.err.splitlines() if line.strip()]
        assert lines, "exit 2 without a message"
        assert ":" in lines[0], result.err
        if touched:
            assert any(t in result.err for t in touched | {"spec.json"}), (touched, result.err)


@settings(
    max_examples=700,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(case=mutated_specs())
def test_mutated_specs_validate(case: tuple[dict[str, Any], set[str]], tmp_path: Path) -> None:
    spec, touched = case
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    result = rq("spec", "validate", str(path))
    _check(result, touched)
    if result.code == 2:
        # The message names a JSON path inside the spec, not only the file.
        assert (
            any(t in result.err for t in touched) or "streams" in result.err or "auth" in result.err
        ), result.err


_names = itertools.count()


@settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(case=mutated_specs())
def test_mutated_specs_connect(case: tuple[dict[str, Any], set[str]], rq_home: Path) -> None:
    spec, touched = case
    path = rq_home.parent / "spec.json"
    path.write_text(json.dumps(spec))
    flags = ["--auth-token", "t0k", "--auth-user", "u", "--auth-pass", "p"]
    if isinstance(spec.get("auth"), dict) and spec["auth"].get("type") == "oauth2":
        flags = ["--client-id", "c", "--client-secret", "s", "--refresh-token", "r"]
    result = rq("connect", f"c{next(_names)}", "--spec", str(path), *flags)
    TALLY.bad_inputs_tried += 1
    assert "Traceback" not in result.text, result.text
    assert "internal error" not in result.text, result.text
    assert result.code in (0, 2), result.text
    if result.code == 2:
        assert result.err.strip(), "exit 2 without a message"


WORDS = [
    "connect", "connections", "list", "update", "sync", "status", "delete", "query", "spec",
    "validate", "schema", "secrets", "--json", "--spec", "--stream", "--full-refresh",
    "--wait", "--format", "table", "json", "csv", "xml", "--schedule", "hourly", "61 * * * *",
    "* * *", "--auth-token", "--auth-user", "--client-id", "--drop-tables", "--no-schedule",
    "-x", "--nope", "", "name", "bad name!", "../etc/passwd", "missing.json", "SELECT 1",
    "SELECT * FROM nope.nope", "DROP TABLE x", "-", "--", "\x00", "é", "a" * 300,
]  # fmt: skip
arg_lists = st.lists(st.sampled_from(WORDS) | st.text(max_size=10), min_size=1, max_size=6)


@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(args=arg_lists)
def test_random_argument_lists(args: list[str], rq_home: Path) -> None:
    if args[0] in ("worker", "beat", "demo") or "--help" in args:
        return
    result = rq(*args)
    TALLY.bad_inputs_tried += 1
    assert "Traceback" not in result.text, (args, result.text)
    assert "internal error" not in result.text, (args, result.text)
    assert result.code in (0, 1, 2), (args, result.code, result.text)
    if result.code != 0:
        assert result.text.strip(), (args, "no message")
