"""The spec extensions on real Celery workers: child requests (`parent`: the parent stream
syncs first, its children start when it has committed, a failed parent fails its children),
and headers, bodies, token sources, cursor formats and errors in 200 answers."""

from __future__ import annotations

from tests.distributed.conftest import Dist, Workers
from tests.e2e.helpers import rows
from tests.e2e.test_concurrency import Listing, listing_spec
from tests.e2e.test_spec_extensions import (
    TASK_STREAMS,
    TOP_HEADERS,
    assert_token_apis_landed,
    body_cursor_api,
    expected_tasks,
    projects_and_tasks,
    token_apis,
)
from tests.support.api_server import ApiServer, RecordedRequest, Reply


def spec(server: ApiServer) -> dict[str, object]:
    return {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "bearer"},
        "streams": TASK_STREAMS,
    }


def test_children_start_after_their_parent_and_land_every_pair(
    dist: Dist, workers: Workers
) -> None:
    with ApiServer() as server:
        projects_and_tasks(server, gone={3})
        dist.connect("pm", spec(server))
        workers.start(2)

        done = dist.rq("connections", "sync", "pm")

        assert done.returncode == 0, done.stdout + done.stderr
        landed = sorted((r["project_id"], r["id"], r["project"]) for r in rows("pm", "tasks", None))
        assert landed == expected_tasks(gone={3})
        status = dist.status("pm")
        assert status["projects"]["status"] == status["tasks"]["status"] == "succeeded"
        first_task = min(r.at for r in server.requests if r.path.endswith("/tasks"))
        assert all(r.at < first_task for r in server.requests_to("/projects"))


def test_a_failed_parent_fails_its_children_on_the_workers(dist: Dist, workers: Workers) -> None:
    with ApiServer() as server:
        projects_and_tasks(server)
        server.route("/projects", lambda request: Reply({"message": "nope"}, status=400))
        dist.connect("pm", spec(server))
        workers.start(1)

        done = dist.rq("connections", "sync", "pm")

        assert done.returncode == 1, done.stdout + done.stderr
        status = dist.status("pm")
        assert status["projects"]["status"] == status["tasks"]["status"] == "failed"
        assert "parent stream 'projects' failed" in status["tasks"]["error"]
        assert not any(r.path.endswith("/tasks") for r in server.requests)


def test_headers_bodies_tokens_formats_and_errors_in_200_on_two_workers(
    dist: Dist, workers: Workers
) -> None:
    with ApiServer() as server:
        server.route("/slack/users.list", lambda r: Reply({"ok": False, "error": "invalid_auth"}))
        server.route("/things", lambda r: Reply([{"id": 1, "created": 1717243200}]))
        streams = [
            body_cursor_api(server),
            *token_apis(server),
            {
                "name": "members",
                "endpoint": "/slack/users.list",
                "data_path": "members",
                "error_path": "error",
            },
            {
                "name": "things",
                "endpoint": "/things",
                "primary_key": ["id"],
                "cursor_field": "created",
                "cursor_start": "2024-01-01T00:00:00Z",
                "cursor_format": "epoch_seconds",
                "params": {"created[gte]": "{{cursor}}"},
            },
        ]
        dist.connect("ext", {**spec(server), "streams": streams, "headers": TOP_HEADERS})
        workers.start(2)

        done = dist.rq("connections", "sync", "ext")

        assert done.returncode == 1, done.stdout + done.stderr  # the Slack-like stream fails
        status = dist.status("ext")
        assert status["members"]["status"] == "failed"
        assert "invalid_auth" in status["members"]["error"]
        for name in ("rows", "customers", "issues", "events", "things"):
            assert status[name]["status"] == "succeeded", status[name]
        assert [r["id"] for r in rows("ext", "rows")] == [1, 2, 3, 4, 5]
        assert_token_apis_landed("ext", server)
        assert server.requests_to("/things")[0].params == {"created[gte]": "1704067200"}


def test_concurrency_on_workers_lands_every_record_within_the_shared_budget(
    dist: Dist, workers: Workers
) -> None:
    """Pages fetched ahead in a worker's pool process, two streams on two workers sharing
    the Redis budget; a 429 holds back both (RateLimiter.hold on Redis)."""
    listing = Listing([{"id": n, "name": f"n{n}"} for n in range(1, 1501)], total=True)
    other = Listing([{"id": n, "name": f"o{n}"} for n in range(1, 1501)], kind="page")
    refused: list[float] = []

    def items(request: RecordedRequest) -> Reply:
        if not refused and request.params.get("offset") == "700":
            refused.append(request.at)
            return Reply({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
        return listing(request)

    with ApiServer() as server:
        server.route("/items", items)
        server.route("/others", other)
        body = listing_spec(server, listing, 8, rate_limit={"requests_per_second": 40})
        second = listing_spec(server, other, 8)["streams"][0]
        body["streams"].append({**second, "name": "others", "endpoint": "/others"})
        dist.connect("shop", body)
        workers.start(2)

        done = dist.rq("connections", "sync", "shop")

        assert done.returncode == 0, done.stdout + done.stderr
        assert [r["id"] for r in rows("shop", "items")] == list(range(1, 1501))
        assert [r["id"] for r in rows("shop", "others")] == list(range(1, 1501))
        assert 1 < listing.most <= 8 and other.most <= 8
        arrivals = sorted(r.at for r in server.requests)
        assert refused
        held = [t - refused[0] for t in arrivals if 0.15 < t - refused[0] < 0.9]
        assert held == [], held  # neither stream sent anything while the 429 held
