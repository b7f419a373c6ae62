"""GitLab REST API v4: `GET /api/v4/projects` and `GET /api/v4/projects/:id/issues`
(docs.gitlab.com/api/rest/#pagination, /api/projects/#list-all-projects,
/api/issues/#list-project-issues, /api/rest/troubleshooting status codes).

Followed from the docs:
- offset pagination with `page` (default 1) and `per_page` (default 20, at most 100);
  headers `X-Page`, `X-Per-Page`, `X-Next-Page` (empty on the last page), `X-Prev-Page`,
  `X-Total`, `X-Total-Pages` and a `Link` header (`rel="next"`, `"prev"`, `"first"`,
  `"last"`); the body is the bare JSON array;
- authentication with the `PRIVATE-TOKEN` header (or `Authorization: Bearer`); a wrong
  token is 401 `{"message": "401 Unauthorized"}`;
- projects: `order_by` (`id`, `name`, `created_at` default, `updated_at`,
  `last_activity_at`), `sort` (`asc`, `desc` default), `membership`, `archived`;
- project issues: `updated_after` / `updated_before` / `created_after` (ISO 8601, on or
  after; a value that is not a date is 400 `{"error": "updated_after is invalid"}`),
  `order_by` (`created_at` default, `updated_at`), `sort`, `state` (all by default),
  `scope`; issues carry a global `id`, a per-project `iid`, `project_id`, `labels` (names),
  `assignees` (user objects, shared by many issues), `author`;
- a project that is gone (pending deletion after the listing was read) answers 404
  `{"message": "404 Project Not Found"}` on its sub-resources.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.services import ServiceFake, parse_iso

MAX_PER_PAGE = 100
BIG_PROJECT_ISSUES = 230  # one project spans several pages of 100


def gitlab_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


class GitLab(ServiceFake):
    prefix = "/api/v4/"

    def __init__(
        self,
        server: ApiServer,
        token: str = "glpat-FakeGitLabToken0123456789",
        seed: int = 13,
    ) -> None:
        super().__init__(server, seed=seed, start=datetime(2024, 4, 1, 7, 0, tzinfo=UTC))
        self.token = token
        self.users = [
            {
                "id": 1000 + n,
                "username": f"dev{n}",
                "name": f"Developer {n}",
                "state": "active",
                "avatar_url": f"https://gitlab.example.com/uploads/user/avatar/{1000 + n}.png",
                "web_url": f"https://gitlab.example.com/dev{n}",
            }
            for n in range(1, 13)
        ]
        self.projects: list[dict[str, Any]] = []
        self.issues_of: dict[int, list[dict[str, Any]]] = {}
        self.gone: set[int] = set()  # projects whose issues answer 404
        self.next_issue_id = 500000
        counts = [BIG_PROJECT_ISSUES, 31, 0, 18, 44, 9, 27, 12]
        for n, count in enumerate(counts):
            project = self.add_project(f"project-{n + 1}")
            for _ in range(count):
                self.add_issue(project["id"])
        archived = self.add_project("legacy-importer", archived=True)
        self.gone.add(archived["id"])
        server.route("/api/v4/projects", self._projects)

    # --- the ground truth -----------------------------------------------------------------

    @property
    def issues(self) -> list[dict[str, Any]]:
        """Every issue a sync can read (the gone project has none to give)."""
        return [
            issue
            for pid, issues in self.issues_of.items()
            if pid not in self.gone
            for issue in issues
        ]

    # --- data -----------------------------------------------------------------------------

    def add_project(self, path: str, archived: bool = False) -> dict[str, Any]:
        pid = 4200 + 7 * len(self.projects)
        created = self.tick(self.random.randint(600, 90000))
        project = {
            "id": pid,
            "description": f"The {path} project",
            "name": path.replace("-", " ").title(),
            "name_with_namespace": f"Acme / {path.replace('-', ' ').title()}",
            "path": path,
            "path_with_namespace": f"acme/{path}",
            "created_at": gitlab_time(created),
            "default_branch": "main",
            "web_url": f"https://gitlab.example.com/acme/{path}",
            "last_activity_at": gitlab_time(created),
            "archived": archived,
            "visibility": self.random.choice(["private", "internal"]),
            "namespace": {"id": 77, "name": "Acme", "path": "acme", "kind": "group"},
        }
        if archived:
            project["marked_for_deletion_on"] = "2024-04-30"
        self.projects.append(project)
        self.issues_of[pid] = []
        self.server.route(f"/api/v4/projects/{pid}/issues", self._issues_handler(pid))
        return project

    def add_issue(self, project_id: int) -> dict[str, Any]:
        rng = self.random
        issues = self.issues_of[project_id]
        self.next_issue_id += rng.randint(1, 40)
        created = self.tick(rng.randint(60, 4000))
        state = rng.choice(["opened", "opened", "closed"])
        assignees = rng.sample(self.users, rng.choice([0, 1, 1, 2, 3]))
        issue = {
            "id": self.next_issue_id,
            "iid": len(issues) + 1,
            "project_id": project_id,
            "title": f"Issue {len(issues) + 1} of {project_id}",
            "description": "Steps to reproduce...",
            "state": state,
            "created_at": gitlab_time(created),
            "updated_at": gitlab_time(created + timedelta(seconds=rng.randint(0, 9000))),
            "closed_at": gitlab_time(created + timedelta(hours=3)) if state == "closed" else None,
            "labels": rng.sample(["bug", "feature", "docs", "p1", "p2"], rng.randint(0, 3)),
            "milestone": None,
            "assignees": assignees,
            "assignee": assignees[0] if assignees else None,
            "author": rng.choice(self.users),
            "user_notes_count": rng.randint(0, 20),
            "web_url": f"https://gitlab.example.com/acme/p/-/issues/{len(issues) + 1}",
        }
        issues.append(issue)
        project = next(p for p in self.projects if p["id"] == project_id)
        project["last_activity_at"] = max(project["last_activity_at"], issue["updated_at"])
        return issue

    def latest_update(self) -> datetime:
        moments = [parse_iso(i["updated_at"]) for i in self.issues]
        return max(m for m in moments if m is not None)

    def mutate(self) -> None:
        """Issues are edited (assignees, labels, state; `updated_at` moves on), new issues
        are opened in existing projects, and a new project appears with its issues."""
        self.now = max(self.now, self.latest_update()) + timedelta(hours=2)
        rng = self.random
        for issue in rng.sample(self.issues, 50):
            issue["assignees"] = rng.sample(self.users, rng.choice([0, 1, 2]))
            issue["assignee"] = issue["assignees"][0] if issue["assignees"] else None
            issue["labels"] = sorted({*issue["labels"], "triaged"})
            issue["state"] = "closed"
            issue["closed_at"] = issue["updated_at"] = gitlab_time(self.tick(rng.randint(5, 90)))
        for n in range(20):
            self.add_issue(self.projects[n % 3]["id"])
        project = self.add_project("newcomer")
        for _ in range(15):
            self.add_issue(project["id"])

    # --- the API --------------------------------------------------------------------------

    def _auth_error(self, request: RecordedRequest) -> Reply | None:
        token = request.header("private-token")
        bearer = request.header("authorization") or ""
        if token == self.token or bearer == f"Bearer {self.token}":
            return None
        return Reply({"message": "401 Unauthorized"}, 401)

    def _paged(self, request: RecordedRequest, items: list[dict[str, Any]]) -> Reply:
        try:
            page = max(1, int(request.params.get("page") or "1"))
            per_page = int(request.params.get("per_page") or "20")
        except ValueError:
            return Reply({"error": "page is invalid"}, 400)
        per_page = min(max(per_page, 1), MAX_PER_PAGE)
        total_pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        next_page = str(page + 1) if page < total_pages else ""
        prev_page = str(page - 1) if page > 1 else ""
        links = []
        base = f"{self.server.url}{request.path}"

        def link(number: int, rel: str) -> str:
            query = {**request.params, "page": str(number), "per_page": str(per_page)}
            return f'<{base}?{urlencode(query)}>; rel="{rel}"'

        if prev_page:
            links.append(link(page - 1, "prev"))
        if next_page:
            links.append(link(page + 1, "next"))
        links += [link(1, "first"), link(total_pages, "last")]
        headers: dict[str, str | list[str]] = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Next-Page": next_page,
            "X-Prev-Page": prev_page,
            "X-Total": str(len(items)),
            "X-Total-Pages": str(total_pages),
            "Link": ", ".join(links),
        }
        return Reply(chunk, headers=headers)

    def _projects(self, request: RecordedRequest) -> Reply:
        if error := self._auth_error(request):
            return error
        params = request.params
        order_by = params.get("order_by", "created_at")
        if order_by not in ("id", "name", "path", "created_at", "updated_at", "last_activity_at"):
            return Reply({"error": "order_by does not have a valid value"}, 400)
        key = "last_activity_at" if order_by == "updated_at" else order_by
        projects = sorted(
            self.projects, key=lambda p: p[key], reverse=params.get("sort", "desc") == "desc"
        )
        if "archived" in params:
            wanted = params["archived"].lower() == "true"
            projects = [p for p in projects if p["archived"] == wanted]
        return self._paged(request, projects)

    def _issues_handler(self, project_id: int) -> Any:
        def handler(request: RecordedRequest) -> Reply:
            if error := self._auth_error(request):
                return error
            if project_id in self.gone:
                return Reply({"message": "404 Project Not Found"}, 404)
            params = request.params
            issues = list(self.issues_of[project_id])
            for name, keep in (
                ("updated_after", lambda i, m: parse_iso(i["updated_at"]) >= m),
                ("updated_before", lambda i, m: parse_iso(i["updated_at"]) <= m),
                ("created_after", lambda i, m: parse_iso(i["created_at"]) >= m),
            ):
                if name in params:
                    moment = parse_iso(params[name])
                    if moment is None:
                        return Reply({"error": f"{name} is invalid"}, 400)
                    issues = [i for i in issues if keep(i, moment)]
            state = params.get("state", "all")
            if state not in ("opened", "closed", "all"):
                return Reply({"error": "state does not have a valid value"}, 400)
            if state != "all":
                issues = [i for i in issues if i["state"] == state]
            order_by = params.get("order_by", "created_at")
            if order_by not in ("created_at", "updated_at", "priority", "due_date", "title"):
                return Reply({"error": "order_by does not have a valid value"}, 400)
            issues.sort(
                key=lambda i: (i.get(order_by) or "", i["id"]),
                reverse=params.get("sort", "desc") == "desc",
            )
            return self._paged(request, issues)

        return handler
