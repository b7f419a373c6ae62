"""Jira Cloud: `GET /rest/api/3/search` and `GET /rest/api/3/project/search`
(developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search,
/api-group-projects, support.atlassian.com "Advanced search reference - JQL fields").

Followed from the docs:
- search: `jql`, `startAt` (0-based), `maxResults` (default 50; the server caps it: here at
  50 even when 100 is asked for, as Jira does for expensive field sets), `fields` (comma
  list; `*all` / `*navigable`); answer `{"expand", "startAt", "maxResults", "total",
  "issues": [...]}` where `maxResults` is the size actually used;
- JQL: clauses joined by `AND`: `project = KEY` / `project in (A, B)` and date clauses
  `updated >= "2024-01-01 00:00"` (`created` too; `=`, `>`, `>=`, `<`, `<=`), with the
  date formats JQL accepts: `yyyy/MM/dd HH:mm`, `yyyy-MM-dd HH:mm`, `yyyy/MM/dd`,
  `yyyy-MM-dd`; a date compares at minute precision (in the user's time zone, UTC here);
  `ORDER BY field [ASC|DESC], ...`;
- a malformed query is a 400 `{"errorMessages": ["Error in the JQL Query: ..."],
  "errors": {}}`; a date in another format (ISO `2024-01-01T00:00:00Z`) is a 400 naming
  the valid formats; an unknown project is a 400 `The value 'X' does not exist for the
  field 'project'.`;
- issue timestamps look like `2024-01-15T10:30:00.000+0000`;
- project/search: `startAt`, `maxResults` (max 50) -> `{"self", "nextPage", "maxResults",
  "startAt", "total", "isLast", "values": [...]}`;
- basic auth with an account email and an API token; otherwise a 401.

Atlassian removed `GET /rest/api/3/search` from Jira Cloud in 2025 (changelog CHANGE-2046;
it answers 410 Gone with a message naming the replacement): `Jira(removed_search=True)`
does the same. The replacement, `GET /rest/api/3/search/jql`, is served too: `jql` (must
be bounded: a query with no restriction is a 400), `nextPageToken`, `maxResults` (capped at
100 here), `fields` (only `id` by default); answer `{"issues", "nextPageToken", "isLast"}`
with no token on the last page; a token is only valid with the JQL that issued it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.services import ServiceFake, b64_json, from_b64_json

SEARCH_CAP = 50
PROJECT_CAP = 50
DATE_FIELDS = {"updated", "created"}
STATUSES = [("1", "To Do", "new"), ("3", "In Progress", "indeterminate"), ("10001", "Done", "done")]
_DATE_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"[^"]*"|\'[^\']*\')|(?P<op>>=|<=|!=|=|>|<|\(|\)|,)|(?P<word>[^\s=<>!(),"\']+))'
)


class JqlError(Exception):
    pass


def jira_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}+0000"
    )


def parse_jira_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


@dataclass(frozen=True)
class Query:
    filters: list[Callable[[dict[str, Any]], bool]]
    order: list[tuple[str, bool]]  # (field, descending)
    projects: list[str]


class Jira(ServiceFake):
    prefix = "/rest/api/3/"

    def __init__(
        self,
        server: ApiServer,
        email: str = "me@example.com",
        token: str = "ATATT3xFfGF0FakeJiraApiToken",
        seed: int = 5,
        removed_search: bool = False,
    ) -> None:
        super().__init__(server, seed=seed, start=datetime(2024, 1, 2, 8, 0, tzinfo=UTC))
        self.email, self.token = email, token
        self.removed_search = removed_search
        self.projects = [
            self._project("10000", "ABC", "Alpha Board"),
            self._project("10001", "XYZ", "Xylophone"),
            self._project("10002", "OPS", "Operations"),
        ]
        self.people = [
            {
                "accountId": f"5b10ac8d82e05b22cc7d4e{n:02d}",
                "displayName": f"Person {n}",
                "active": True,
                "timeZone": "UTC",
                "accountType": "atlassian",
            }
            for n in range(1, 9)
        ]
        self.all_issues: list[dict[str, Any]] = []
        for n in range(330):
            self.add_issue("ABC" if n % 3 else self.random.choice(["XYZ", "OPS"]))
        server.route("/rest/api/3/search", self._search)
        server.route("/rest/api/3/search/jql", self._search_jql)
        server.route("/rest/api/3/project/search", self._project_search)

    def issues(self, project: str = "ABC") -> list[dict[str, Any]]:
        """The ground truth of `project = KEY`."""
        return [i for i in self.all_issues if i["fields"]["project"]["key"] == project]

    # --- data -----------------------------------------------------------------------------

    def _project(self, pid: str, key: str, name: str) -> dict[str, Any]:
        return {
            "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
            "self": f"https://your-site.atlassian.net/rest/api/3/project/{pid}",
            "id": pid,
            "key": key,
            "name": name,
            "avatarUrls": {"48x48": f"https://your-site.atlassian.net/rest/api/3/avatar/{pid}"},
            "projectTypeKey": "software",
            "simplified": False,
            "style": "classic",
            "isPrivate": key == "OPS",
            "properties": {},
        }

    def add_issue(self, project_key: str) -> dict[str, Any]:
        rng = self.random
        project = next(p for p in self.projects if p["key"] == project_key)
        number = 1 + sum(1 for i in self.all_issues if i["fields"]["project"]["key"] == project_key)
        iid = str(10000 + len(self.all_issues) + 1)
        created = self.tick(rng.randint(30, 7200))
        status = rng.choice(STATUSES)
        issue = {
            "expand": "operations,versionedRepresentations,editmeta,changelog,renderedFields",
            "id": iid,
            "self": f"https://your-site.atlassian.net/rest/api/3/issue/{iid}",
            "key": f"{project_key}-{number}",
            "fields": {
                "summary": f"{project_key} issue number {number}",
                "status": self._status(status),
                "assignee": rng.choice([None, *self.people]),
                "created": jira_time(created),
                "updated": jira_time(created + timedelta(seconds=rng.randint(0, 5000))),
                "project": {"id": project["id"], "key": project_key, "name": project["name"]},
                "labels": rng.sample(["backend", "frontend", "bug", "infra"], rng.randint(0, 2)),
            },
        }
        self.all_issues.append(issue)
        return issue

    def _status(self, status: tuple[str, str, str]) -> dict[str, Any]:
        sid, name, category = status
        return {
            "self": f"https://your-site.atlassian.net/rest/api/3/status/{sid}",
            "description": "",
            "name": name,
            "id": sid,
            "statusCategory": {"key": category, "name": name},
        }

    def latest_update(self) -> datetime:
        return max(parse_jira_time(i["fields"]["updated"]) for i in self.all_issues)

    def mutate(self) -> None:
        """Issues move on (status, assignee; `updated` after every earlier one), new ones
        are created in every project."""
        # an ABC issue edited later in the very minute of ABC's newest update: JQL compares
        # minutes, so the incremental query returns it with the newest one
        abc = self.issues("ABC")
        newest = max(abc, key=lambda i: parse_jira_time(i["fields"]["updated"]))
        latest = parse_jira_time(newest["fields"]["updated"])
        later = latest.replace(second=59, microsecond=999000)
        if later > latest:
            other = next(i for i in abc if i is not newest)
            other["fields"] = {**other["fields"], "updated": jira_time(later)}
        self.now = max(self.now, self.latest_update()) + timedelta(hours=6)
        for issue in self.random.sample(self.all_issues, 45):
            issue["fields"] = {
                **issue["fields"],
                "status": self._status(STATUSES[-1]),
                "assignee": self.random.choice(self.people),
                "updated": jira_time(self.tick(self.random.randint(20, 400))),
            }
        for n in range(30):
            self.add_issue(["ABC", "XYZ", "ABC"][n % 3])

    # --- the API --------------------------------------------------------------------------

    def _authorized(self, request: RecordedRequest) -> bool:
        expected = base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        return request.header("authorization") == f"Basic {expected}"

    def _unauthorized(self) -> Reply:
        return Reply(
            {
                "errorMessages": [
                    "You are not authenticated. Authentication required to perform this operation."
                ],
                "errors": {},
            },
            401,
            headers={"WWW-Authenticate": 'Basic realm="protected-area"'},
        )

    def _window(self, request: RecordedRequest, cap: int) -> tuple[int, int] | Reply:
        try:
            start = int(request.params.get("startAt", "0"))
            size = int(request.params.get("maxResults", "50"))
        except ValueError:
            return Reply({"errorMessages": ["startAt and maxResults must be numbers"]}, 400)
        return max(start, 0), max(0, min(size, cap))

    def _found(self, query: Query) -> list[dict[str, Any]]:
        found = [i for i in self.all_issues if all(f(i) for f in query.filters)]
        for name, descending in reversed(query.order):
            found.sort(key=lambda i, n=name: _sort_key(i, n), reverse=descending)
        return found

    def _search_jql(self, request: RecordedRequest) -> Reply:
        if not self._authorized(request):
            return self._unauthorized()
        jql = request.params.get("jql", "")
        try:
            query = self.parse(jql)
        except JqlError as exc:
            return Reply({"errorMessages": [str(exc)], "errors": {}}, 400)
        if not query.filters:
            message = (
                "Unbounded JQL queries are not allowed here. Please add a search restriction "
                "to your query."
            )
            return Reply({"errorMessages": [message], "errors": {}}, 400)
        try:
            size = min(max(int(request.params.get("maxResults", "50")), 1), 100)
        except ValueError:
            return Reply({"errorMessages": ["maxResults must be a number"], "errors": {}}, 400)
        start = 0
        if token := request.params.get("nextPageToken"):
            state = from_b64_json(token)
            if not isinstance(state, dict) or state.get("jql") != jql:
                message = "The provided next page token is invalid or expired."
                return Reply({"errorMessages": [message], "errors": {}}, 400)
            start = int(state["at"])
        found = self._found(query)
        page = found[start : start + size]
        wanted = request.params.get("fields", "id")
        issues = [_with_fields(i, wanted) for i in page]
        end = start + len(page)
        body: dict[str, Any] = {"issues": issues, "isLast": end >= len(found)}
        if end < len(found):
            body["nextPageToken"] = b64_json({"jql": jql, "at": end})
        return Reply(body)

    def _search(self, request: RecordedRequest) -> Reply:
        if not self._authorized(request):
            return self._unauthorized()
        if self.removed_search:
            message = (
                "The requested API has been removed. Please migrate to the /rest/api/3/search/"
                "jql API. A full migration guideline is available at "
                "https://developer.atlassian.com/changelog/#CHANGE-2046"
            )
            return Reply({"errorMessages": [message], "errors": {}}, 410)
        window = self._window(request, SEARCH_CAP)
        if isinstance(window, Reply):
            return window
        start, size = window
        try:
            query = self.parse(request.params.get("jql", ""))
        except JqlError as exc:
            return Reply({"errorMessages": [str(exc)], "errors": {}}, 400)
        found = self._found(query)
        wanted = request.params.get("fields", "*navigable")
        issues = [_with_fields(i, wanted) for i in found[start : start + size]]
        return Reply(
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": size,
                "total": len(found),
                "issues": issues,
            }
        )

    def _project_search(self, request: RecordedRequest) -> Reply:
        if not self._authorized(request):
            return self._unauthorized()
        window = self._window(request, PROJECT_CAP)
        if isinstance(window, Reply):
            return window
        start, size = window
        values = self.projects[start : start + size]
        last = start + size >= len(self.projects)
        base = "https://your-site.atlassian.net/rest/api/3/project/search"
        body: dict[str, Any] = {
            "self": f"{base}?startAt={start}&maxResults={size}",
            "maxResults": size,
            "startAt": start,
            "total": len(self.projects),
            "isLast": last,
            "values": values,
        }
        if not last:
            body["nextPage"] = f"{base}?startAt={start + size}&maxResults={size}"
        return Reply(body)

    # --- JQL ------------------------------------------------------------------------------

    def parse(self, jql: str) -> Query:
        tokens = _tokens(jql)
        filters: list[Callable[[dict[str, Any]], bool]] = []
        order: list[tuple[str, bool]] = []
        projects: list[str] = []
        pos = 0

        def peek(offset: int = 0) -> str | None:
            return tokens[pos + offset] if pos + offset < len(tokens) else None

        def expected(what: str) -> JqlError:
            got = peek()
            where = f"'{got}'" if got is not None else "the end of the query"
            return JqlError(f"Error in the JQL Query: Expecting {what} but got {where}.")

        while pos < len(tokens) and (peek() or "").lower() != "order":
            field = (peek() or "").lower()
            if field == "project":
                pos += 1
                operator = (peek() or "").lower()
                if operator == "=":
                    keys = [_unquote(tokens[pos + 1])] if pos + 1 < len(tokens) else []
                    pos += 2
                elif operator == "in" and peek(1) == "(":
                    pos += 2
                    keys = []
                    while peek() not in (")", None):
                        if peek() != ",":
                            keys.append(_unquote(tokens[pos]))
                        pos += 1
                    if peek() != ")":
                        raise expected("')'")
                    pos += 1
                else:
                    raise expected("an operator ('=' or 'in')")
                if not keys or any(k is None for k in keys):
                    raise expected("a project key")
                known = {p["key"] for p in self.projects} | {p["id"] for p in self.projects}
                for key in keys:
                    if key not in known:
                        raise JqlError(f"The value '{key}' does not exist for the field 'project'.")
                projects += [str(k) for k in keys]
                chosen = {str(k) for k in keys}
                filters.append(
                    lambda i, c=chosen: (
                        i["fields"]["project"]["key"] in c or i["fields"]["project"]["id"] in c
                    )
                )
            elif field in DATE_FIELDS:
                operator = peek(1)
                raw = peek(2)
                if operator not in ("=", ">", ">=", "<", "<="):
                    pos += 1
                    raise expected("an operator")
                if raw is None:
                    pos += 2
                    raise expected("a date")
                moment = _jql_date(field, _unquote(raw) or "")
                filters.append(_date_filter(field, operator, moment))
                pos += 3
            else:
                raise JqlError(
                    f"Error in the JQL Query: Field '{peek()}' does not exist or you do not "
                    "have permission to view it."
                )
            if peek() is None or (peek() or "").lower() == "order":
                break
            if (peek() or "").lower() != "and":
                raise expected("either 'OR' or 'AND'")
            pos += 1
            if peek() is None:
                raise expected("a field name")
        if peek() is not None:
            if (peek(1) or "").lower() != "by":
                pos += 1
                raise expected("'by'")
            pos += 2
            while True:
                name = peek()
                if name is None or name == ",":
                    raise expected("a field name")
                pos += 1
                descending = False
                if (peek() or "").lower() in ("asc", "desc"):
                    descending = (peek() or "").lower() == "desc"
                    pos += 1
                order.append((name.lower(), descending))
                if peek() is None:
                    break
                if peek() != ",":
                    raise expected("',' or the end of the query")
                pos += 1
        return Query(filters, order, projects)


def _tokens(jql: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(jql):
        if jql[pos:].strip() == "":
            break
        match = _TOKEN.match(jql, pos)
        if not match or match.end() == pos:
            raise JqlError(
                f"Error in the JQL Query: The character '{jql[pos:].strip()[0]}' is a reserved "
                f"JQL character. (line 1, character {pos})"
            )
        tokens.append(match.group("str") or match.group("op") or match.group("word"))
        pos = match.end()
    for token in tokens:
        if token[:1] in "\"'" and (len(token) < 2 or token[-1] != token[0]):
            raise JqlError("Error in the JQL Query: unterminated string.")
    return tokens


def _unquote(token: str) -> str | None:
    if token in ("(", ")", ",", "=", ">", "<", ">=", "<=", "!="):
        return None
    return token[1:-1] if token[:1] in "\"'" else token


def _jql_date(field: str, text: str) -> datetime:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise JqlError(
        f"Date value '{text}' for field '{field}' is invalid. Valid formats include: "
        "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
        "format e.g. '-5d', '4w 2d'."
    )


def _date_filter(field: str, operator: str, moment: datetime) -> Callable[[dict[str, Any]], bool]:
    def minute(issue: dict[str, Any]) -> datetime:
        return parse_jira_time(issue["fields"][field]).replace(second=0, microsecond=0)

    tests: dict[str, Callable[[datetime], bool]] = {
        "=": lambda v: v == moment,
        ">": lambda v: v > moment,
        ">=": lambda v: v >= moment,
        "<": lambda v: v < moment,
        "<=": lambda v: v <= moment,
    }
    return lambda issue: tests[operator](minute(issue))


def _sort_key(issue: dict[str, Any], name: str) -> Any:
    if name in ("id", "key"):
        return int(issue["id"])
    if name in DATE_FIELDS:
        return parse_jira_time(issue["fields"][name])
    return str(issue["fields"].get(name))


def _with_fields(issue: dict[str, Any], wanted: str) -> dict[str, Any]:
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    if names & {"*all", "*navigable"}:
        return issue
    if names <= {"id"}:
        return {"id": issue["id"]}  # the enhanced search's default: ids only
    return {**issue, "fields": {k: v for k, v in issue["fields"].items() if k in names}}
