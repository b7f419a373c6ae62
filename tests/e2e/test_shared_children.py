"""Array items shared by many parents (GitHub's issue assignees and labels) land once per
parent when the child is keyed by its parent too, and are never collapsed silently.

The fake follows GitHub's REST listing `GET /repos/{owner}/{repo}/issues?state=all&
per_page=&page=`: a bare JSON array, `Link: <...>; rel="next"`, issues carrying
`assignees` (user objects) and `labels` (label objects).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Cli, rows, status_streams
from tests.support.api_server import ApiServer, RecordedRequest, Reply

USERS = [{"login": f"dev{n}", "id": 1000 + n, "type": "User"} for n in range(6)]
LABELS = [{"id": 200 + n, "name": f"label-{n}", "color": "ededed"} for n in range(4)]
ISSUES = [
    {
        "id": 5000 + n,
        "number": n,
        "title": f"issue {n}",
        "state": "open",
        "assignees": [USERS[(n + k) % 6] for k in range(3)],
        "labels": [LABELS[n % 4]],
        "updated_at": f"2024-05-{1 + n % 28:02d}T10:00:00Z",
    }
    for n in range(1, 44)
]


def github(server: ApiServer) -> None:
    def listing(request: RecordedRequest) -> Reply:
        page, size = int(request.params.get("page", 1)), int(request.params.get("per_page", 30))
        chunk = ISSUES[(page - 1) * size : page * size]
        headers: dict[str, str | list[str]] = {}
        if page * size < len(ISSUES):
            url = f"{server.url}/repos/acme/app/issues?state=all&per_page={size}&page={page + 1}"
            headers["Link"] = f'<{url}>; rel="next"'
        return Reply(chunk, headers=headers)

    server.route("/repos/acme/app/issues", listing)


def spec(server: ApiServer, assignee_key: Any) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "bearer"},
        "streams": [
            {
                "name": "issues",
                "endpoint": "/repos/acme/app/issues",
                "params": {"state": "all", "per_page": 10},
                "primary_key": ["id"],
                "pagination": {"type": "link_header"},
                "expand": {
                    "assignees": {"primary_key": assignee_key, "parent_key": "issue_id"},
                    "labels": {"primary_key": ["issue_id", "id"], "parent_key": "issue_id"},
                },
            }
        ],
    }


def pairs(table: str) -> list[tuple[int, int]]:
    return sorted((r["issue_id"], r["id"]) for r in rows("gh", table, order_by=None))


def test_children_keyed_by_their_parent_land_once_per_parent(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    github(api_server)
    path = write_spec(spec(api_server, ["issue_id", "id"]))
    assert cli("connect", "gh", "--spec", str(path), "--auth-token", "t").code == 0

    for _ in range(2):  # a second sync replaces each issue's children, duplicating none
        done = cli("connections", "sync", "gh")
        assert done.code == 0, done.out + done.err
        truth = sorted((i["id"], u["id"]) for i in ISSUES for u in i["assignees"])
        assert len(truth) == 129 and pairs("issues_assignees") == truth
        assert pairs("issues_labels") == sorted((i["id"], i["labels"][0]["id"]) for i in ISSUES)
        stream = status_streams(cli, "gh")["issues"]
        assert stream["status"] == "succeeded" and stream["warnings"] == []


def test_a_child_key_under_several_parents_is_a_warning_naming_the_fix(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    github(api_server)
    path = write_spec(spec(api_server, "id"))
    assert cli("connect", "gh", "--spec", str(path), "--auth-token", "t").code == 0

    done = cli("connections", "sync", "gh")

    assert done.code == 0, done.out + done.err
    assert len(rows("gh", "issues_assignees", order_by=None)) == 6  # what the key allows
    warnings = status_streams(cli, "gh")["issues"]["warnings"]
    shared = [w for w in warnings if "appear under several parents" in w]
    assert shared and all('"primary_key": ["issue_id","id"]' in w for w in shared), warnings


@pytest.mark.parametrize("key", [["issue_id", "id"], ["id", "issue_id"]])
def test_the_parent_key_in_a_child_key_is_valid(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer, key: list[str]
) -> None:
    done = cli("spec", "validate", str(write_spec(spec(api_server, key))))
    assert done.code == 0, done.out + done.err
