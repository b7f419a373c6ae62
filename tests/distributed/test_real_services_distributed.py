"""The GitLab example (a `projects` parent stream, an `issues` child stream run once per
project, a 404 project ignored, assignees expanded) synced by two Celery workers against
the GitLab fake: the same tables as in embedded mode, before and after the data changes."""

from __future__ import annotations

import pytest

from tests.distributed.conftest import TOKEN, Dist, Workers
from tests.e2e.test_real_services import assert_gitlab_tables, example, moment
from tests.support.api_server import ApiServer
from tests.support.services.gitlab import GitLab

pytestmark = [pytest.mark.distributed, pytest.mark.redis]


def test_gitlab_parent_and_child_streams_on_two_workers(dist: Dist, workers: Workers) -> None:
    with ApiServer() as server:
        gitlab = GitLab(server, token=TOKEN)
        dist.connect("gitlab", example("gitlab", f"{server.url}/api/v4"))
        workers.start(2)

        done = dist.rq("connections", "sync", "gitlab")

        assert done.returncode == 0, done.stdout + done.stderr
        assert_gitlab_tables("gitlab", gitlab)
        status = dist.status("gitlab")
        assert status["projects"]["status"] == status["issues"]["status"] == "succeeded"
        latest = gitlab.latest_update()
        mark = len(server.requests)

        gitlab.mutate()
        again = dist.rq("connections", "sync", "gitlab")

        assert again.returncode == 0, again.stdout + again.stderr
        children = [r for r in list(server.requests)[mark:] if r.path.endswith("/issues")]
        assert len({r.path for r in children}) == len(gitlab.projects)
        assert all(moment(r.params["updated_after"]) == latest for r in children)
        assert_gitlab_tables("gitlab", gitlab)
        assert TOKEN not in done.stdout + done.stderr + again.stdout + again.stderr
