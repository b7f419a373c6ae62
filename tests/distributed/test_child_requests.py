"""Child requests (`parent`) on two real Celery workers: the parent stream syncs first, its
children start when it has committed, and a failed parent fails its children."""

from __future__ import annotations

from tests.distributed.conftest import Dist, Workers
from tests.e2e.helpers import rows
from tests.e2e.test_spec_extensions import TASK_STREAMS, expected_tasks, projects_and_tasks
from tests.support.api_server import ApiServer, Reply


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
