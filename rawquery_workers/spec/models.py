"""The connector spec, version "1": one frozen pydantic model per kind, joined by tagged unions.

Structure errors come from pydantic; the rules that span fields (a GraphQL stream needs a
`query`, `expand` needs a `primary_key`, ...) raise `RuleViolations`, which carries one
problem per relative JSON path so that `spec.loading` can report every problem at once.
Build a Spec with `spec.loading.parse_spec` (it passes the API type the rules need).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    model_validator,
)

from rawquery_workers.templating import placeholders

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ColumnType = Literal["string", "integer", "float", "boolean", "timestamp", "date", "json"]
FlattenMode = Literal["prefix", "lift", "json"]
SyncMode = Literal["full_refresh", "incremental"]
ParamValue = str | int | float | bool
AUTH_NAMES = ("auth.username", "auth.password", "auth.token")


class RuleViolations(ValueError):
    """Several cross-field problems, each as (path relative to the model, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))


def _raise_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise RuleViolations(problems)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- auth ----------------------------------------------------------------------------------


class NoAuth(StrictModel):
    """A public API: no credentials."""

    type: Literal["none"]


class ApiKeyAuth(StrictModel):
    """`--auth-token` sent in one header or one query parameter."""

    type: Literal["api_key"]
    header: str | None = Field(default=None, min_length=1)
    query_param: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_place(self) -> ApiKeyAuth:
        if (self.header is None) == (self.query_param is None):
            raise RuleViolations(
                [("", "api_key auth needs exactly one of 'header' or 'query_param'")]
            )
        return self


class BearerAuth(StrictModel):
    """`Authorization: Bearer <--auth-token>`."""

    type: Literal["bearer"]


class BasicAuth(StrictModel):
    """HTTP basic auth from `--auth-user` / `--auth-pass`."""

    type: Literal["basic"]


class OAuth2Auth(StrictModel):
    """Access tokens from `token_url`, refreshed before each sync and once on a 401."""

    type: Literal["oauth2"]
    token_url: str
    refresh_url: str | None = None
    grant_type: Literal["refresh_token", "client_credentials"] = "refresh_token"
    scopes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _urls(self) -> OAuth2Auth:
        problems = [(name, _url_problem(url)) for name, url in self._named_urls()]
        _raise_if([(n, p) for n, p in problems if p])
        return self

    def _named_urls(self) -> list[tuple[str, str]]:
        urls = [("token_url", self.token_url)]
        if self.refresh_url is not None:
            urls.append(("refresh_url", self.refresh_url))
        return urls

    @property
    def effective_refresh_url(self) -> str:
        return self.refresh_url or self.token_url


class PreRequest(StrictModel):
    """The login call of a custom auth; `extract` names values read from its JSON answer."""

    url: str
    method: Literal["GET", "POST", "PUT", "PATCH"] = "POST"
    body: dict[str, JsonValue] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    extract: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _paths(self) -> PreRequest:
        problems = []
        if msg := _url_problem(self.url):
            problems.append(("url", msg))
        for name, path in self.extract.items():
            if not re.fullmatch(r"response(\.[^.]+)+", path):
                problems.append((f"extract.{name}", f"path '{path}' must start with 'response.'"))
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                problems.append((f"extract.{name}", "extracted names are letters, digits, _"))
        _raise_if(problems)
        return self


class CustomAuth(StrictModel):
    """Multi-step auth: an optional login call, then templated headers and query params."""

    type: Literal["custom"]
    pre_request: PreRequest | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_names(self) -> CustomAuth:
        extracted = tuple(self.pre_request.extract) if self.pre_request else ()
        problems: list[tuple[str, str]] = []
        problems += _unknown_names("headers", self.headers, AUTH_NAMES + extracted)
        problems += _unknown_names("params", self.params, AUTH_NAMES + extracted)
        if self.pre_request:
            pre = self.pre_request
            problems += _unknown_names("pre_request.headers", pre.headers, AUTH_NAMES)
            problems += _unknown_names("pre_request.body", pre.body or {}, AUTH_NAMES)
            problems += _unknown_names("pre_request", {"url": pre.url}, AUTH_NAMES)
        _raise_if(problems)
        return self


Auth = Annotated[
    NoAuth | ApiKeyAuth | BearerAuth | BasicAuth | OAuth2Auth | CustomAuth,
    Field(discriminator="type"),
]


# --- pagination ----------------------------------------------------------------------------


class OffsetPagination(StrictModel):
    """`?offset=N&limit=page_size`; ends at an empty or short page."""

    type: Literal["offset"]
    param: str = "offset"
    limit_param: str | None = "limit"
    page_size: int = Field(default=100, ge=1)
    start_offset: int = Field(default=0, ge=0)


class CursorPagination(StrictModel):
    """A token read from the body at `cursor_path`, sent back as query `param` (REST) or as
    GraphQL variable `cursor_variable` (Relay); ends when the token is missing or empty, or
    when `has_more_path` reads false."""

    type: Literal["cursor"]
    cursor_path: str
    param: str | None = None
    cursor_variable: str | None = None
    has_more_path: str | None = None


class PageNumberPagination(StrictModel):
    """`?page=N[&per_page=page_size]`; ends at an empty page or one shorter than page_size."""

    type: Literal["page_number"]
    param: str = "page"
    page_size_param: str | None = None
    page_size: int | None = Field(default=None, ge=1)
    start_page: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _size(self) -> PageNumberPagination:
        if self.page_size_param and self.page_size is None:
            raise RuleViolations([("page_size", "is required when page_size_param is set")])
        return self


class LinkHeaderPagination(StrictModel):
    """RFC 8288 (5988) `Link: <url>; rel="next"`, GitHub-style."""

    type: Literal["link_header"]
    rel: str = "next"


class NextUrlPagination(StrictModel):
    """The next page's URL (absolute or relative) read from the body at `next_url_path`."""

    type: Literal["next_url"]
    next_url_path: str


Pagination = Annotated[
    OffsetPagination
    | CursorPagination
    | PageNumberPagination
    | LinkHeaderPagination
    | NextUrlPagination,
    Field(discriminator="type"),
]


# --- rate limits and retries ---------------------------------------------------------------


class RateLimit(StrictModel):
    """Per connection: all its streams, on all workers, share `requests_per_second`."""

    requests_per_second: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1)
    retry_on: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default_factory=lambda: [429, 500, 502, 503, 504]
    )
    backoff: Literal["exponential", "linear", "constant"] = "exponential"
    max_retries: int = Field(default=5, ge=0, le=100)
    respect_retry_after: bool = True
    # Seconds: the first wait; each backoff kind grows from it.
    backoff_base: float = Field(default=1.0, gt=0, le=600)
    # Seconds: the longest single wait, Retry-After included.
    max_wait: float = Field(default=300.0, gt=0, le=3600)

    @property
    def effective_burst(self) -> int:
        if self.burst is not None:
            return self.burst
        return max(1, int(self.requests_per_second or 1))


DEFAULT_RATE_LIMIT = RateLimit()


# --- streams -------------------------------------------------------------------------------


class Expand(StrictModel):
    """An array field expanded into the child table STREAM_FIELD."""

    primary_key: str | list[str]
    parent_key: str

    @property
    def keys(self) -> list[str]:
        return [self.primary_key] if isinstance(self.primary_key, str) else self.primary_key


class Fields(StrictModel):
    include: list[str] | None = None
    rename: dict[str, str] = Field(default_factory=dict)


class Stream(StrictModel):
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=120)]
    endpoint: str | None = None
    method: Literal["GET", "POST"] = "GET"
    data_path: str | None = None
    primary_key: list[str] = Field(default_factory=list)
    cursor_field: str | None = None
    pagination: Pagination | None = None
    params: dict[str, ParamValue] = Field(default_factory=dict)
    query: str | None = None
    variables: dict[str, JsonValue] = Field(default_factory=dict)
    sync_modes: list[SyncMode] | None = None
    flatten: dict[str, FlattenMode] = Field(default_factory=dict)
    expand: dict[str, Expand] = Field(default_factory=dict)
    fields: Fields | None = None
    types: dict[str, ColumnType] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Stream:
        api_type = (info.context or {}).get("api_type", "rest")
        problems = _stream_problems(self, api_type)
        _raise_if(problems)
        return self

    @property
    def incremental(self) -> bool:
        """True when this stream syncs incrementally by default."""
        modes = self.sync_modes or ["full_refresh", "incremental"]
        return self.cursor_field is not None and "incremental" in modes

    @property
    def full_refresh_only(self) -> bool:
        return self.sync_modes == ["full_refresh"]

    def child_table(self, field: str) -> str:
        return f"{self.name}_{field}"


def _absolute_url(url: str) -> str:
    if msg := _url_problem(url):
        raise RuleViolations([("", msg)])
    return url


class Spec(StrictModel):
    version: Literal["1"]
    # Checked on its own (not in `_rules`) so a bad URL is reported with the other problems.
    base_url: Annotated[str, AfterValidator(_absolute_url)]
    type: Literal["rest", "graphql"] = "rest"
    auth: Auth
    streams: list[Stream] = Field(min_length=1)
    rate_limit: RateLimit | None = None

    @model_validator(mode="after")
    def _rules(self) -> Spec:
        problems = _endpoint_problems(self.base_url, self.streams)
        problems += _table_name_problems(self.streams)
        _raise_if(problems)
        return self

    @property
    def retry(self) -> RateLimit:
        return self.rate_limit or DEFAULT_RATE_LIMIT

    def stream(self, name: str) -> Stream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(name)

    def table_names(self) -> list[str]:
        """Every table this spec lands: each stream and each expanded child."""
        return [t for s in self.streams for t in [s.name, *map(s.child_table, s.expand)]]


# --- cross-field rules ---------------------------------------------------------------------

_PAGINATION_TYPES = ("offset", "cursor", "page_number", "link_header", "next_url")


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"'{url}' is not an absolute http(s) URL"
    return None


def _unknown_names(
    where: str, values: dict[str, JsonValue] | dict[str, str], known: tuple[str, ...]
) -> list[tuple[str, str]]:
    choices = ", ".join("{{" + k + "}}" for k in known)
    return [
        (f"{where}.{key}", f"unknown template '{{{{{name}}}}}'; expected one of {choices}")
        for key, value in values.items()
        for name in placeholders(value)
        if name not in known
    ]


def _stream_problems(stream: Stream, api_type: str) -> list[tuple[str, str]]:
    problems = _graphql_problems(stream) if api_type == "graphql" else _rest_problems(stream)
    if stream.expand and not stream.primary_key:
        why = "'expand' needs the stream's 'primary_key' (child rows point at their parent by it)"
        problems.append(("expand", why))
    if stream.sync_modes is not None and not stream.sync_modes:
        problems.append(("sync_modes", "must list at least one of full_refresh, incremental"))
    if stream.sync_modes and "incremental" in stream.sync_modes and not stream.cursor_field:
        problems.append(("sync_modes", "'incremental' needs a 'cursor_field'"))
    problems += _cursor_template_problems(stream, "params", stream.params)
    problems += _cursor_template_problems(stream, "variables", stream.variables)
    return problems + _shape_problems(stream)


def _graphql_problems(stream: Stream) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    pag = stream.pagination
    if not stream.query:
        problems.append(("query", "a GraphQL stream needs a 'query'"))
    if pag is not None and pag.type != "cursor":
        why = f"GraphQL streams paginate with type 'cursor' (Relay), not '{pag.type}'"
        problems.append(("pagination.type", why))
    if isinstance(pag, CursorPagination) and not pag.cursor_variable:
        why = "GraphQL cursor pagination needs 'cursor_variable'"
        problems.append(("pagination.cursor_variable", why))
    return problems


def _rest_problems(stream: Stream) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not stream.endpoint:
        problems.append(("endpoint", "a REST stream needs an 'endpoint' (e.g. \"/users\")"))
    if stream.query is not None:
        why = '\'query\' is only for GraphQL specs (set "type": "graphql" at the top level)'
        problems.append(("query", why))
    if stream.variables:
        problems.append(("variables", "'variables' is only for GraphQL specs"))
    if isinstance(stream.pagination, CursorPagination) and not stream.pagination.param:
        why = "REST cursor pagination needs 'param', the query parameter that carries the cursor"
        problems.append(("pagination.param", why))
    return problems


def _shape_problems(stream: Stream) -> list[tuple[str, str]]:
    """Rename targets, reserved names and expand settings."""
    problems: list[tuple[str, str]] = []
    rename = stream.fields.rename if stream.fields else {}
    targets = list(rename.values())
    for dup in sorted({t for t in targets if targets.count(t) > 1}):
        problems.append(("fields.rename", f"two fields are renamed to '{dup}'"))
    reserved = "names starting with '_rq_' are reserved for columns rawquery adds"
    problems += [
        (f"fields.rename.{old}", reserved) for old, new in rename.items() if new.startswith("_rq_")
    ]
    for field, exp in stream.expand.items():
        if stream.flatten.get(field):
            problems.append((f"expand.{field}", "a field cannot be both flattened and expanded"))
        if exp.parent_key in exp.keys:
            why = f"'{exp.parent_key}' is also the child's primary_key; pick a distinct column name"
            problems.append((f"expand.{field}.parent_key", why))
    return problems


def _cursor_template_problems(
    stream: Stream, where: str, values: dict[str, JsonValue] | dict[str, ParamValue]
) -> list[tuple[str, str]]:
    """Stream params and GraphQL variables may use `{{cursor}}` (the saved cursor) only."""
    problems: list[tuple[str, str]] = []
    needs = "'{{cursor}}' needs the stream's 'cursor_field' (the saved cursor it stands for)"
    for key, value in values.items():
        names = set(placeholders(value))
        for name in sorted(names - {"cursor"}):
            unknown = (
                f"unknown template '{{{{{name}}}}}'; stream {where} may only use {{{{cursor}}}}"
            )
            problems.append((f"{where}.{key}", unknown))
        if "cursor" in names and stream.cursor_field is None:
            problems.append((f"{where}.{key}", needs))
    return problems


def _endpoint_problems(base_url: str, streams: list[Stream]) -> list[tuple[str, str]]:
    """An absolute endpoint must stay on base_url's origin (credentials go nowhere else)."""
    problems: list[tuple[str, str]] = []
    for i, stream in enumerate(streams):
        endpoint = stream.endpoint or ""
        absolute = "://" in endpoint or endpoint.startswith("//")
        if absolute and _origin(urljoin(base_url, endpoint)) != _origin(base_url):
            msg = f"'{endpoint}' is not on base_url's host; use a path such as \"/users\""
            problems.append((f"streams[{i}].endpoint", msg))
    return problems


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def _table_name_problems(streams: list[Stream]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for i, stream in enumerate(streams):
        tables = [(f"streams[{i}].name", stream.name)]
        tables += [(f"streams[{i}].expand.{f}", stream.child_table(f)) for f in stream.expand]
        for path, table in tables:
            key = table.lower()
            if key in seen:
                problems.append((path, f"table name '{table}' is already used by {seen[key]}"))
            else:
                seen[key] = path
    return problems
