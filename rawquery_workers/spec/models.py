"""The connector spec, version "1": one frozen pydantic model per kind, joined by tagged unions.

Every field carries its `Field(description=...)` and every model its docstring: `rq spec
schema` (JSON Schema) and docs/reference.md (`spec.reference`) are both generated from them.

A kind (an auth or pagination type) is one model here, a subclass of `AuthKind` or
`PaginationKind`, and one member of the `Auth` or `Pagination` union. The model names the
class it builds (`authenticator`, `paginator`, importing it when called: the flows and
paginators import these models, not the other way round) and, for auth, the credentials it
needs and where they travel. A kind defined elsewhere (a plugin, a test) joins its union
with `register_kind`; docs/dev/contracts.md says how to add one.

Structure errors come from pydantic; the rules that span fields (a GraphQL stream needs a
`query`, `expand` needs a `primary_key`, ...) raise `RuleViolations`, which carries one
problem per relative JSON path so that `spec.loading` can report every problem at once.
Build a Spec with `spec.loading.parse_spec` (it passes the API type the rules need).
"""

from __future__ import annotations

import re
import typing
from abc import abstractmethod
from functools import reduce
from operator import or_
from typing import TYPE_CHECKING, Annotated, Literal
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

from rawquery_workers.spec.credentials import Credentials, flag_for
from rawquery_workers.spec.origin import same_origin
from rawquery_workers.spec.templating import is_only, placeholders, strings

if TYPE_CHECKING:
    from typing import Unpack

    import httpx

    from rawquery_workers.auth.base import AuthContext
    from rawquery_workers.paginate.base import Paginator, PaginatorOptions

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ColumnType = Literal["string", "integer", "float", "boolean", "timestamp", "date", "json"]
FlattenMode = Literal["prefix", "lift", "json"]
SyncMode = Literal["full_refresh", "incremental"]
ParamValue = str | int | float | bool
ParamValues = ParamValue | list[ParamValue]  # a list is sent as repeated keys
HttpMethod = Literal["GET", "POST", "PUT", "PATCH"]
CURSOR_FORMATS = ("iso8601", "epoch_seconds", "epoch_millis", "date")
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


class Kind(StrictModel):
    """A member of a tagged union: its `type` field's one literal value names it in a spec."""

    @classmethod
    def tag(cls) -> str:
        """The `type` value that selects this kind (`"offset"`, `"bearer"`)."""
        field = cls.model_fields.get("type")
        values = typing.get_args(field.annotation) if field is not None else ()
        if field is None or typing.get_origin(field.annotation) is not Literal or len(values) != 1:
            raise TypeError(f'{cls.__name__} needs a field `type: Literal["NAME"]`')
        return str(values[0])


# --- auth ----------------------------------------------------------------------------------


class AuthKind(Kind):
    """Base of the auth kinds: the flow a spec's `auth` builds, the credentials it needs and
    where they travel. The defaults fit a kind that signs only requests to `base_url`."""

    def credential_fields(self) -> tuple[str, ...]:
        """The `Credentials` fields the flow reads (`token`, `username`, ...)."""
        return ()

    def required_credentials(self, creds: Credentials) -> list[str]:
        """The `rq connect` flags this kind requires that `creds` does not give."""
        return [flag_for(name) for name in self.credential_fields() if not getattr(creds, name)]

    def credential_params(self) -> tuple[str, ...]:
        """Query parameters that carry credentials (the redactor masks their values)."""
        return ()

    def credential_headers(self) -> tuple[str, ...]:
        """Headers that carry credentials (the redactor masks their values)."""
        return ()

    def credential_urls(self, base_url: str) -> dict[str, str]:
        """Where credentials are sent: the spec field naming each URL -> that URL."""
        return {"base_url": base_url}

    @abstractmethod
    def authenticator(self, credentials: Credentials, context: AuthContext) -> httpx.Auth | None:
        """The flow signing requests to `context.base_url`'s origin (None: no auth). Raises
        AuthError naming the missing `rq connect` flags when `credentials` lack some."""


class NoAuth(AuthKind):
    """A public API: no credentials."""

    type: Literal["none"] = Field(description='"none".')

    def credential_urls(self, base_url: str) -> dict[str, str]:
        return {}

    def authenticator(self, credentials: Credentials, context: AuthContext) -> None:
        return None


class ApiKeyAuth(AuthKind):
    """`--auth-token` sent in one header or one query parameter."""

    type: Literal["api_key"] = Field(description='"api_key".')
    header: str | None = Field(
        default=None,
        min_length=1,
        description="Header that carries --auth-token (exactly one of header, query_param).",
    )
    query_param: str | None = Field(
        default=None, min_length=1, description="Query parameter that carries --auth-token."
    )

    @model_validator(mode="after")
    def _one_place(self) -> ApiKeyAuth:
        if (self.header is None) == (self.query_param is None):
            raise RuleViolations(
                [("", "api_key auth needs exactly one of 'header' or 'query_param'")]
            )
        return self

    def credential_fields(self) -> tuple[str, ...]:
        return ("token",)

    def credential_params(self) -> tuple[str, ...]:
        return (self.query_param,) if self.query_param else ()

    def credential_headers(self) -> tuple[str, ...]:
        return (self.header,) if self.header else ()

    def authenticator(self, credentials: Credentials, context: AuthContext) -> httpx.Auth:
        from rawquery_workers.auth.api_key import ApiKeyAuthenticator

        return ApiKeyAuthenticator(self, credentials, base_url=context.base_url)


class BearerAuth(AuthKind):
    """`Authorization: Bearer <--auth-token>`."""

    type: Literal["bearer"] = Field(description='"bearer".')

    def credential_fields(self) -> tuple[str, ...]:
        return ("token",)

    def authenticator(self, credentials: Credentials, context: AuthContext) -> httpx.Auth:
        from rawquery_workers.auth.bearer import BearerAuthenticator

        return BearerAuthenticator(credentials, base_url=context.base_url)


class BasicAuth(AuthKind):
    """HTTP basic auth from `--auth-user` / `--auth-pass`."""

    type: Literal["basic"] = Field(description='"basic".')

    def credential_fields(self) -> tuple[str, ...]:
        return ("username", "password")

    def authenticator(self, credentials: Credentials, context: AuthContext) -> httpx.Auth:
        from rawquery_workers.auth.basic import BasicAuthenticator

        return BasicAuthenticator(credentials, base_url=context.base_url)


class OAuth2Auth(AuthKind):
    """Access tokens from `token_url`, refreshed before each sync and once on a 401."""

    type: Literal["oauth2"] = Field(
        description='"oauth2". Credentials: --client-id, --client-secret and (for '
        "refresh_token) --refresh-token."
    )
    token_url: str = Field(description="Token endpoint (absolute URL).")
    refresh_url: str | None = Field(
        default=None,
        description="Endpoint for the refresh_token grant, when it differs from token_url.",
    )
    grant_type: Literal["refresh_token", "client_credentials"] = Field(
        default="refresh_token",
        description='"refresh_token" (rotated refresh tokens are stored encrypted at once) or '
        '"client_credentials".',
    )
    scopes: list[str] = Field(
        default_factory=list, description="Scopes requested, sent space-separated."
    )

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

    def credential_fields(self) -> tuple[str, ...]:
        needed = ("client_id", "client_secret")
        return (*needed, "refresh_token") if self.grant_type == "refresh_token" else needed

    def credential_urls(self, base_url: str) -> dict[str, str]:
        # base_url gets the access token; the token endpoints get the client's secrets.
        return {"base_url": base_url, **{f"auth.{n}": url for n, url in self._named_urls()}}

    def authenticator(self, credentials: Credentials, context: AuthContext) -> httpx.Auth:
        from rawquery_workers.auth.oauth2 import OAuth2Authenticator

        return OAuth2Authenticator(
            self,
            credentials,
            base_url=context.base_url,
            on_credentials=context.on_credentials,
            refresh_lock=context.refresh_lock,
            reload=context.reload,
            token_client=context.token_client,
            redactor=context.redactor,
        )


class PreRequest(StrictModel):
    """The login call of a custom auth; `extract` names values read from its JSON answer."""

    url: str = Field(description="Login URL (absolute); may use the `{{auth.*}}` templates.")
    method: Literal["GET", "POST", "PUT", "PATCH"] = Field(
        default="POST", description="HTTP method of the login call."
    )
    body: dict[str, JsonValue] | None = Field(
        default=None,
        description="JSON body of the login call; string values may use the `{{auth.*}}` "
        "templates.",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Headers of the login call.")
    extract: dict[str, str] = Field(
        default_factory=dict,
        description='Names to read from the login answer: {"session_token": "response.token"} '
        "makes `{{session_token}}` available.",
    )

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

    def auth_names(self) -> set[str]:
        """The `{{auth.*}}` names the login's url, headers and body use."""
        return _auth_names([self.url, dict(self.headers), self.body])


class CustomAuth(AuthKind):
    """Multi-step auth: an optional login call, then templated headers and query params."""

    type: Literal["custom"] = Field(description='"custom".')
    pre_request: PreRequest | None = Field(
        default=None,
        description="Optional login call made before the first request and again after a 401.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers added to every request; values may use `{{auth.username}}`, "
        "`{{auth.password}}`, `{{auth.token}}` and extracted names.",
    )
    params: dict[str, str] = Field(
        default_factory=dict,
        description="Query parameters added to every request; same templates as headers.",
    )

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

    def auth_names(self) -> set[str]:
        """The `{{auth.*}}` names every template of this auth uses (the login's too)."""
        login = self.pre_request.auth_names() if self.pre_request else set()
        return _auth_names([dict(self.headers), dict(self.params)]) | login

    def credential_fields(self) -> tuple[str, ...]:
        return tuple(sorted(name.removeprefix("auth.") for name in self.auth_names()))

    def credential_params(self) -> tuple[str, ...]:
        return tuple(self.params)

    def credential_headers(self) -> tuple[str, ...]:
        return tuple(self.headers)

    def credential_urls(self, base_url: str) -> dict[str, str]:
        urls = {"base_url": base_url} if self.headers or self.params else {}
        if self.pre_request is not None:
            urls["auth.pre_request.url"] = self.pre_request.url
        return urls

    def authenticator(self, credentials: Credentials, context: AuthContext) -> httpx.Auth:
        from rawquery_workers.auth.custom import CustomAuthenticator

        return CustomAuthenticator(
            self, credentials, base_url=context.base_url, redactor=context.redactor
        )


def _auth_names(values: list[JsonValue]) -> set[str]:
    return {name for value in values for name in placeholders(value) if name in AUTH_NAMES}


Auth = Annotated[
    NoAuth | ApiKeyAuth | BearerAuth | BasicAuth | OAuth2Auth | CustomAuth,
    Field(discriminator="type"),
]


# --- pagination ----------------------------------------------------------------------------


class PaginationKind(Kind):
    """Base of the pagination kinds: each names the paginator it builds."""

    @abstractmethod
    def paginator(self, **options: Unpack[PaginatorOptions]) -> Paginator:
        """A fresh paginator walking this kind's pages (see `paginate.paginator_for`)."""


_PAGE_SIZE = (
    "Records per page asked for (the API may cap it); a page shorter than the largest one "
    "seen is the last."
)
_TOTAL_PATH = (
    "Dotted path of the total record count in the body; the walk ends when it is reached, "
    "and warns when it lands fewer."
)
_HAS_MORE_PATH = "Dotted path of a boolean; false ends the stream."
LAST_RECORD = "last_record."


class OffsetPagination(PaginationKind):
    """`?offset=N&limit=page_size`; ends at an empty page, a page shorter than the largest
    seen, the total at `total_path`, or `has_more_path` reading false."""

    type: Literal["offset"] = Field(description='"offset".')
    param: str = Field(default="offset", description="Query parameter of the offset.")
    limit_param: str | None = Field(
        default="limit", description="Query parameter of the page size (null: not sent)."
    )
    page_size: int = Field(default=100, ge=1, description=_PAGE_SIZE)
    start_offset: int = Field(default=0, ge=0, description="Offset of the first page.")
    total_path: str | None = Field(default=None, description=_TOTAL_PATH)
    has_more_path: str | None = Field(default=None, description=_HAS_MORE_PATH)

    def paginator(self, **options: Unpack[PaginatorOptions]) -> Paginator:
        from rawquery_workers.paginate.offset import OffsetPaginator

        return OffsetPaginator(self, **options)


class CursorPagination(PaginationKind):
    """A token read from the body at `cursor_path` (or the page's last record, or a response
    header), sent back as query `param` or at `body_path` in the JSON body (REST), or as
    GraphQL variable `cursor_variable` (Relay); ends when the token is missing or empty, or
    when `has_more_path` reads false."""

    type: Literal["cursor"] = Field(description='"cursor".')
    cursor_path: str | None = Field(
        default=None,
        min_length=1,
        description='Dotted path of the next-page token in the body (e.g. "paging.next.after", '
        '"data.-1.id"); "last_record.FIELD" reads it from the page\'s last record (Stripe\'s '
        '"last_record.id"). Exactly one of cursor_path, cursor_header.',
    )
    cursor_header: str | None = Field(
        default=None,
        min_length=1,
        description='Response header holding the next-page token (GitLab\'s "X-Next-Page").',
    )
    param: str | None = Field(
        default=None,
        min_length=1,
        description="Query parameter that carries the token (REST: this or body_path).",
    )
    body_path: str | None = Field(
        default=None,
        min_length=1,
        description="Dotted path in the JSON body that carries the token (REST with method "
        'POST, PUT or PATCH; Notion\'s "start_cursor").',
    )
    cursor_variable: str | None = Field(
        default=None, description="GraphQL variable that carries the token (GraphQL; required)."
    )
    has_more_path: str | None = Field(default=None, description=_HAS_MORE_PATH)

    @model_validator(mode="after")
    def _one_source(self) -> CursorPagination:
        problems = []
        if (self.cursor_path is None) == (self.cursor_header is None):
            problems.append(("cursor_path", "give exactly one of 'cursor_path', 'cursor_header'"))
        if self.param is not None and self.body_path is not None:
            problems.append(
                ("body_path", "give one of 'param', 'body_path' (where the token goes)")
            )
        if self.cursor_path is not None and self.cursor_path.strip() == LAST_RECORD.rstrip("."):
            problems.append(("cursor_path", "name the field: 'last_record.id'"))
        _raise_if(problems)
        return self

    @property
    def last_record_field(self) -> str | None:
        """FIELD of a `cursor_path` "last_record.FIELD" (None: the token is elsewhere)."""
        path = self.cursor_path or ""
        return path.removeprefix(LAST_RECORD) if path.startswith(LAST_RECORD) else None

    def paginator(self, **options: Unpack[PaginatorOptions]) -> Paginator:
        from rawquery_workers.paginate.cursor import CursorPaginator

        return CursorPaginator(self, **options)


class PageNumberPagination(PaginationKind):
    """`?page=N[&per_page=page_size]`; ends like offset pagination."""

    type: Literal["page_number"] = Field(description='"page_number".')
    param: str = Field(default="page", description="Query parameter of the page number.")
    page_size_param: str | None = Field(
        default=None, description="Query parameter of the page size (needs page_size)."
    )
    page_size: int | None = Field(default=None, ge=1, description=_PAGE_SIZE)
    start_page: int = Field(default=1, ge=0, description="Number of the first page.")
    total_path: str | None = Field(default=None, description=_TOTAL_PATH)
    has_more_path: str | None = Field(default=None, description=_HAS_MORE_PATH)

    @model_validator(mode="after")
    def _size(self) -> PageNumberPagination:
        if self.page_size_param and self.page_size is None:
            raise RuleViolations([("page_size", "is required when page_size_param is set")])
        return self

    def paginator(self, **options: Unpack[PaginatorOptions]) -> Paginator:
        from rawquery_workers.paginate.page_number import PageNumberPaginator

        return PageNumberPaginator(self, **options)


class LinkHeaderPagination(PaginationKind):
    """RFC 8288 (5988) `Link: <url>; rel="next"`, GitHub-style."""

    type: Literal["link_header"] = Field(description='"link_header".')
    rel: str = Field(default="next", description="The link relation to follow.")

    def paginator(self, **options: Unpack[PaginatorOptions]) -> Paginator:
        from rawquery_workers.paginate.link_header import LinkHeaderPaginator

        return LinkHeaderPaginator(self, **options)


class NextUrlPagination(PaginationKind):
    """The next page's URL (absolute or relative) read from the body at `next_url_path`, or
    from the response header `next_url_header`."""

    type: Literal["next_url"] = Field(description='"next_url".')
    next_url_path: str | None = Field(
        default=None,
        min_length=1,
        description="Dotted path of the next page's URL (absolute or relative) in the body; "
        "missing, null or empty ends the stream. Exactly one of next_url_path, "
        "next_url_header.",
    )
    next_url_header: str | None = Field(
        default=None,
        min_length=1,
        description="Response header holding the next page's URL; missing or empty ends "
        "the stream.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> NextUrlPagination:
        if (self.next_url_path is None) == (self.next_url_header is None):
            why = "give exactly one of 'next_url_path', 'next_url_header'"
            raise RuleViolations([("next_url_path", why)])
        return self

    def paginator(self, **options: Unpack[PaginatorOptions]) -> Paginator:
        from rawquery_workers.paginate.next_url import NextUrlPaginator

        return NextUrlPaginator(self, **options)


Pagination = Annotated[
    OffsetPagination
    | CursorPagination
    | PageNumberPagination
    | LinkHeaderPagination
    | NextUrlPagination,
    Field(discriminator="type"),
]


# --- rate limits and retries ---------------------------------------------------------------


MAX_CONCURRENCY = 64  # requests in flight per connection: beyond this, APIs answer 429s


class RateLimit(StrictModel):
    """Per connection: all its streams, on all workers, share `requests_per_second`."""

    requests_per_second: float | None = Field(
        default=None,
        gt=0,
        description="Average request rate (may be fractional); absent: no cap.",
    )
    burst: int | None = Field(
        default=None,
        ge=1,
        description="Requests allowed at once; default one second's worth (at least 1).",
    )
    retry_on: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default_factory=lambda: [429, 500, 502, 503, 504],
        description="HTTP statuses retried with backoff.",
    )
    backoff: Literal["exponential", "linear", "constant"] = Field(
        default="exponential",
        description='"exponential" (with full jitter), "linear" or "constant".',
    )
    max_retries: int = Field(
        default=5, ge=0, le=100, description="Retries after the first attempt."
    )
    respect_retry_after: bool = Field(
        default=True, description="Wait as long as the server's Retry-After says."
    )
    backoff_base: float = Field(
        default=1.0,
        gt=0,
        le=600,
        description="Seconds: the first backoff wait; each kind grows from it.",
    )
    max_wait: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="Seconds: the longest single wait, Retry-After included.",
    )
    concurrency: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CONCURRENCY,
        description="The top-level `concurrency`, given here instead (the same bound).",
    )

    @property
    def effective_burst(self) -> int:
        if self.burst is not None:
            return self.burst
        return max(1, int(self.requests_per_second or 1))


DEFAULT_RATE_LIMIT = RateLimit()


# --- streams -------------------------------------------------------------------------------


class Expand(StrictModel):
    """An array field expanded into the child table STREAM_FIELD."""

    primary_key: str | list[str] = Field(
        description="The child table's primary key (a column or a list)."
    )
    parent_key: str = Field(
        description="Name of the child column holding the parent's primary key."
    )

    @property
    def keys(self) -> list[str]:
        return [self.primary_key] if isinstance(self.primary_key, str) else self.primary_key


class Fields(StrictModel):
    include: list[str] | None = Field(
        default=None,
        description="Columns to keep (names after flatten; primary-key columns are always "
        "kept). A child's as FIELD.column.",
    )
    rename: dict[str, str] = Field(
        default_factory=dict,
        description="Old name -> new name, applied last. A child's as FIELD.column.",
    )


class ParentRequest(StrictModel):
    """Child requests: the stream runs once per record of the `stream` named here."""

    stream: str = Field(
        description="The parent stream (of this spec); it syncs first, and this stream runs "
        "once per row of its table as that sync left it."
    )
    fields: dict[Annotated[str, Field(pattern=NAME_PATTERN)], str] = Field(
        default_factory=dict,
        description="Columns added to each child row: child column -> parent column "
        '({"project_id": "id"}). `{{parent.COLUMN}}` reads any parent column in endpoint, '
        "params, body and headers.",
    )


class Stream(StrictModel):
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=120)] = Field(
        description="Table name: letters, digits and _, not starting with a digit. Expanded "
        "arrays land in NAME_FIELD."
    )
    endpoint: str | None = Field(
        default=None,
        description='Path relative to base_url (e.g. "/users"); required for REST. An absolute '
        "URL must be on base_url's origin.",
    )
    method: HttpMethod = Field(
        default="GET", description="HTTP method of a REST stream (`body` needs POST, PUT or PATCH)."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description='Fixed request headers, over the top-level ones ({"Notion-Version": '
        '"2022-06-28"}); templated like params. Credentials belong in `auth`.',
    )
    body: dict[str, JsonValue] | None = Field(
        default=None,
        description="JSON object sent as the request body (REST, method POST, PUT or PATCH); "
        "string values may use `{{cursor}}` and `{{parent.COLUMN}}`.",
    )
    data_path: str | None = Field(
        default=None,
        description='Dotted path to the array of records (e.g. "data.results"; "data.-1.id" '
        "counts from the end). Absent: the body is the array (an object is one record).",
    )
    primary_key: list[str] = Field(
        default_factory=list,
        description="Columns identifying a record: one row per key after any sequence of "
        "syncs (newest wins). Needed by `expand`. In a table rawquery creates they are "
        "required columns and the Iceberg identifier fields.",
    )
    cursor_field: str | None = Field(
        default=None,
        description="Column whose greatest value is saved after each sync (a timestamp: at "
        "most the sync's start time minus cursor_lookback); later syncs keep records at or "
        "after it (incremental).",
    )
    cursor_lookback: float | None = Field(
        default=None,
        ge=0,
        description="Seconds re-read before the saved timestamp cursor, for records that "
        "arrive late (keyed streams merge them, append streams skip what landed).",
    )
    cursor_start: str | None = Field(
        default=None,
        min_length=1,
        description='The value `{{cursor}}` takes on a first sync (e.g. "2024-01-01T00:00:00Z"), '
        "written in cursor_format like a saved cursor. Needed when `{{cursor}}` is part of a "
        "longer value.",
    )
    cursor_format: str = Field(
        default="iso8601",
        description='How `{{cursor}}` is written into requests: "iso8601" (as saved), '
        '"epoch_seconds", "epoch_millis", "date" (YYYY-MM-DD), or a strftime pattern such '
        'as "%Y-%m-%d %H:%M" (UTC).',
    )
    error_path: str | None = Field(
        default=None,
        min_length=1,
        description="Overrides the top-level error_path for this stream.",
    )
    ignore_status: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default_factory=list,
        description="HTTP statuses read as an empty last page (e.g. [404] for a child "
        "request whose parent is gone).",
    )
    parent: ParentRequest | None = Field(
        default=None,
        description="Child requests (REST): run once per record of another stream, with "
        '`{{parent.COLUMN}}` in endpoint, params, body and headers (e.g. "/projects/'
        '{{parent.id}}/tasks").',
    )
    pagination: Pagination | None = Field(
        default=None,
        description="How to get the next page; one of the pagination kinds below. Absent: a "
        "single page.",
    )
    params: dict[str, ParamValues] = Field(
        default_factory=dict,
        description="Query parameters; a list is sent as repeated keys (expand[]=a&expand[]=b). "
        "A value may use `{{cursor}}` (the saved cursor, in cursor_format); one that is only "
        "`{{cursor}}` is left out on a first sync without cursor_start.",
    )
    query: str | None = Field(default=None, description="GraphQL query (GraphQL specs only).")
    variables: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="GraphQL variables (GraphQL specs only); may use `{{cursor}}`.",
    )
    sync_modes: list[SyncMode] | None = Field(
        default=None,
        description='Allowed modes: ["full_refresh"] always replaces the table; absent or '
        "with incremental: incremental when `cursor_field` is set.",
    )
    flatten: dict[str, FlattenMode] = Field(
        default_factory=dict,
        description='Nested objects to flatten, by field path: "prefix" (address_city), '
        '"lift" (city) or "json" (default: kept as a JSON string).',
    )
    expand: dict[str, Expand] = Field(
        default_factory=dict,
        description="Arrays to move into child tables NAME_FIELD, by field name.",
    )
    fields: Fields | None = Field(
        default=None,
        description="Columns to keep (`include`) and to rename (`rename`, applied last).",
    )
    types: dict[str, ColumnType] = Field(
        default_factory=dict,
        description="Column types overriding inference: string, integer, float, boolean, "
        "timestamp, date, json.",
    )
    partition_by: list[str] = Field(
        default_factory=list,
        description="Iceberg partitions of the table CONNECTION.NAME (not of its child "
        'tables): a column ("status": one partition per value), "day(COLUMN)" or '
        '"month(COLUMN)" of a timestamp or date column. Names as in primary_key (the API\'s, '
        "after flatten; a rename is followed), or _rq_synced_at. Set when the table is created "
        "(or, while it holds no rows, once those columns have values); an existing table "
        "keeps its layout.",
    )
    sort_by: list[str] = Field(
        default_factory=list,
        description="Columns of the table's Iceberg sort order (ascending, nulls last), named "
        "like partition_by and set with it; every chunk of rows a sync writes (a Parquet row "
        "group) is sorted by them.",
    )

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

    @property
    def cursor_column(self) -> str | None:
        """The cursor's column in the table (after `fields.rename`)."""
        if self.cursor_field is None:
            return None
        rename = self.fields.rename if self.fields else {}
        return rename.get(self.cursor_field, self.cursor_field)

    @property
    def partition_fields(self) -> list[tuple[str, str]]:
        """`partition_by` as (transform, column) pairs: identity, day or month."""
        return [p for p in map(partition_field, self.partition_by) if p is not None]

    def child_table(self, field: str) -> str:
        return f"{self.name}_{field}"

    @property
    def parent_columns(self) -> list[str]:
        """The parent's columns a child stream reads: `parent.fields` and templates."""
        if self.parent is None:
            return []
        params = typing.cast(dict[str, JsonValue], self.params)
        used: list[JsonValue] = [self.endpoint, params, self.body, dict(self.headers)]
        named = {n.removeprefix("parent.") for n in placeholders(used) if n.startswith("parent.")}
        return sorted(named | set(self.parent.fields.values()))


_TIME_PARTITION = re.compile(r"^(day|month)\(([^()]+)\)$")


def partition_field(entry: str) -> tuple[str, str] | None:
    """A `partition_by` entry as (transform, column); None when it is not one."""
    if match := _TIME_PARTITION.match(entry):
        return match.group(1), match.group(2)
    if not entry or "(" in entry or ")" in entry:
        return None
    return "identity", entry


def _absolute_url(url: str) -> str:
    if msg := _url_problem(url):
        raise RuleViolations([("", msg)])
    return url


class Spec(StrictModel):
    version: Literal["1"] = Field(description='The spec format version: always "1".')
    # Checked on its own (not in `_rules`) so a bad URL is reported with the other problems.
    base_url: Annotated[str, AfterValidator(_absolute_url)] = Field(
        description="Absolute http(s) URL every endpoint is relative to. Credentials are only "
        "ever sent to its origin (scheme, host, port)."
    )
    type: Literal["rest", "graphql"] = Field(
        default="rest",
        description='"rest" or "graphql" (streams then use `query`, POSTed to `endpoint`, '
        'default "/graphql").',
    )
    auth: Auth = Field(
        description="How requests are authenticated; one of the auth kinds below, chosen by `type`."
    )
    streams: list[Stream] = Field(
        min_length=1,
        description="The endpoints to sync; each lands in the table CONNECTION.NAME.",
    )
    rate_limit: RateLimit | None = Field(
        default=None,
        description="Request budget and retries, shared by all streams of the connection on "
        "all workers.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Fixed headers sent with every request of every stream (a stream's own "
        "`headers` win). Credentials belong in `auth`.",
    )
    error_path: str | None = Field(
        default=None,
        min_length=1,
        description="Dotted path of an error in a 200 answer: present and not null, false or "
        'empty, it fails the stream quoting it (Slack\'s "error").',
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        le=MAX_CONCURRENCY,
        description="Requests in flight per connection, always within `requests_per_second`: "
        "offset and page_number streams fetch pages ahead (all the pages left once a total "
        "is known), child streams request several parents at once; cursor and next-URL "
        "chains stay one request at a time. 1: every stream sends one request at a time.",
    )

    @model_validator(mode="after")
    def _rules(self) -> Spec:
        problems = _endpoint_problems(self.base_url, self.streams)
        limit = self.rate_limit.concurrency if self.rate_limit else None
        if limit not in (None, self.concurrency) and "concurrency" in self.model_fields_set:
            problems.append(
                (
                    "rate_limit.concurrency",
                    f"is {limit} but the top-level concurrency is {self.concurrency}; give it once",
                )
            )
        problems += _table_name_problems(self.streams)
        problems += _parent_problems(self.streams)
        problems += _header_problems("headers", self.headers)
        problems += [
            (f"headers.{name}", "top-level headers take no templates (a stream's headers may)")
            for name, value in self.headers.items()
            if any(True for _ in placeholders(value))
        ]
        _raise_if(problems)
        return self

    def headers_for(self, stream: Stream) -> dict[str, str]:
        """The stream's request headers: the top-level ones, then its own (which win)."""
        return {**self.headers, **stream.headers}

    def error_path_for(self, stream: Stream) -> str | None:
        return stream.error_path or self.error_path

    def with_parents(self, names: list[str]) -> list[str]:
        """`names` and the parent streams they need (transitively), parents before their
        children, otherwise in spec order."""
        wanted = set(names)
        for name in names:
            parent = self.stream(name).parent
            while parent is not None and parent.stream not in wanted:
                wanted.add(parent.stream)
                parent = self.stream(parent.stream).parent
        ordered: list[str] = []
        while len(ordered) < len(wanted):  # acyclic (validated): every round places one
            for stream in self.streams:
                ready = stream.parent is None or stream.parent.stream in ordered
                if stream.name in wanted and stream.name not in ordered and ready:
                    ordered.append(stream.name)
        return ordered

    @property
    def retry(self) -> RateLimit:
        return self.rate_limit or DEFAULT_RATE_LIMIT

    @property
    def in_flight(self) -> int:
        """The connection's bound on requests in flight (`concurrency`)."""
        limit = self.rate_limit.concurrency if self.rate_limit else None
        if limit is None or "concurrency" in self.model_fields_set:
            return self.concurrency
        return limit

    def stream(self, name: str) -> Stream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(name)

    def table_names(self) -> list[str]:
        """Every table this spec lands: each stream and each expanded child."""
        return [t for s in self.streams for t in [s.name, *map(s.child_table, s.expand)]]


# --- kinds defined outside this module -----------------------------------------------------

# The kinds each union holds now: the built-in members above, then any `register_kind` added.
_MEMBERS: dict[type[Kind], list[type[Kind]]] = {
    AuthKind: list(typing.get_args(typing.get_args(Auth)[0])),
    PaginationKind: list(typing.get_args(typing.get_args(Pagination)[0])),
}


def kinds(family: type[Kind]) -> list[type[Kind]]:
    """The kinds `parse_spec` accepts now, in union order: `kinds(AuthKind)` or
    `kinds(PaginationKind)`."""
    return list(_MEMBERS[family])


def register_kind(kind: type[Kind]) -> None:
    """Make `kind` (a subclass of `AuthKind` or `PaginationKind`) a member of the `auth` or
    `pagination` union from now on: `parse_spec`, `rq spec schema` and the reference accept
    and describe it. Raises TypeError for another class, ValueError for a taken `type`."""
    members = _MEMBERS[_family(kind)]
    if kind in members:
        return
    taken = {member.tag(): member for member in members}
    if kind.tag() in taken:
        raise ValueError(f"type '{kind.tag()}' is already {taken[kind.tag()].__name__}'s")
    members.append(kind)
    _rebuild_unions()


def unregister_kind(kind: type[Kind]) -> None:
    """Undo `register_kind` (tests register kinds for a while)."""
    members = _MEMBERS[_family(kind)]
    if kind in members:
        members.remove(kind)
        _rebuild_unions()


def _family(kind: type[Kind]) -> type[Kind]:
    for family in _MEMBERS:
        if isinstance(kind, type) and issubclass(kind, family) and kind is not family:
            kind.tag()  # a kind needs its `type` literal
            return family
    raise TypeError(f"{kind!r} is not a subclass of AuthKind or PaginationKind")


def _rebuild_unions() -> None:
    """Retype the two union fields with the current members and rebuild the models they are
    compiled into (Stream, then Spec, which holds Stream's validator)."""
    pagination = Stream.model_fields["pagination"]
    pagination.annotation = reduce(or_, [*_MEMBERS[PaginationKind], type(None)])
    pagination.discriminator = "type"
    Spec.model_fields["auth"].annotation = reduce(or_, _MEMBERS[AuthKind])
    Stream.model_rebuild(force=True)
    Spec.model_rebuild(force=True)


# --- cross-field rules ---------------------------------------------------------------------


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
    if stream.cursor_lookback is not None and not stream.cursor_field:
        problems.append(("cursor_lookback", "needs a 'cursor_field' (it re-reads before it)"))
    problems += _cursor_format_problems(stream)
    problems += _template_problems(
        stream, "params", typing.cast(dict[str, JsonValue], stream.params)
    )
    problems += _template_problems(stream, "variables", stream.variables, parent=False)
    problems += _template_problems(stream, "headers", stream.headers)
    problems += _template_problems(stream, "body", stream.body or {})
    problems += _template_problems(stream, "", {"endpoint": stream.endpoint}, cursor=False)
    problems += _header_problems("headers", stream.headers)
    return problems + _shape_problems(stream) + _layout_problems(stream)


def _cursor_format_problems(stream: Stream) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    fmt = stream.cursor_format
    if fmt not in CURSOR_FORMATS and "%" not in fmt:
        choices = ", ".join(CURSOR_FORMATS)
        why = f"'{fmt}' is not a cursor format; use one of {choices} or a strftime pattern"
        problems.append(("cursor_format", why))
    for name, given in (("cursor_start", stream.cursor_start), ("cursor_format", fmt != "iso8601")):
        if given and not stream.cursor_field:
            problems.append((name, "needs a 'cursor_field' (it is about the saved cursor)"))
    start = stream.cursor_start
    if start is not None and fmt != "iso8601" and not _instant_or_number(start):
        why = (
            f"'{start}' must be an ISO 8601 date or timestamp (or a number) to be written as {fmt}"
        )
        problems.append(("cursor_start", why))
    return problems


def _instant_or_number(text: str) -> bool:
    from datetime import datetime

    try:
        float(text)
        return True
    except ValueError:
        pass
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _graphql_problems(stream: Stream) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    pag = stream.pagination
    if not stream.query:
        problems.append(("query", "a GraphQL stream needs a 'query'"))
    rest_only = {
        "body": stream.body,
        "parent": stream.parent,
        "ignore_status": stream.ignore_status,
    }
    for name, value in rest_only.items():
        if value:
            problems.append((name, f"'{name}' is only for REST specs"))
    if isinstance(pag, CursorPagination) and (pag.body_path or pag.cursor_header):
        which = "body_path" if pag.body_path else "cursor_header"
        why = f"GraphQL cursor pagination reads and sends the token in the body; drop '{which}'"
        problems.append((f"pagination.{which}", why))
    if pag is not None and pag.type != "cursor":
        why = f"GraphQL streams paginate with type 'cursor' (Relay), not '{pag.type}'"
        problems.append(("pagination.type", why))
    if isinstance(pag, CursorPagination) and not pag.cursor_variable:
        why = "GraphQL cursor pagination needs 'cursor_variable'"
        problems.append(("pagination.cursor_variable", why))
    return problems


def _rest_problems(stream: Stream) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    pag = stream.pagination
    if not stream.endpoint:
        problems.append(("endpoint", "a REST stream needs an 'endpoint' (e.g. \"/users\")"))
    if stream.query is not None:
        why = '\'query\' is only for GraphQL specs (set "type": "graphql" at the top level)'
        problems.append(("query", why))
    if stream.variables:
        problems.append(("variables", "'variables' is only for GraphQL specs"))
    if isinstance(pag, CursorPagination) and not pag.param and not pag.body_path:
        why = (
            "REST cursor pagination needs 'param' (the query parameter that carries the cursor)"
            " or 'body_path' (where it goes in the JSON body)"
        )
        problems.append(("pagination.param", why))
    if stream.method == "GET" and stream.body is not None:
        problems.append(("body", "a request body needs 'method' POST, PUT or PATCH, not GET"))
    if isinstance(pag, CursorPagination) and pag.body_path and stream.method == "GET":
        why = "'body_path' puts the token into the JSON body: set 'method' POST, PUT or PATCH"
        problems.append(("pagination.body_path", why))
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
        if exp.keys == [exp.parent_key]:  # with the item's own key it is fine: ["order_id", "id"]
            why = f"'{exp.parent_key}' is also the child's primary_key; pick a distinct column name"
            problems.append((f"expand.{field}.parent_key", why))
    return problems


def _layout_problems(stream: Stream) -> list[tuple[str, str]]:
    """`partition_by` and `sort_by`: well-formed entries naming columns the table will have."""
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for n, entry in enumerate(stream.partition_by):
        where = f"partition_by[{n}]"
        parsed = partition_field(entry)
        if parsed is None:
            why = (
                f"'{entry}' is not a partition; use a column name (one partition per value), "
                '"day(COLUMN)" or "month(COLUMN)"'
            )
            problems.append((where, why))
            continue
        transform, column = parsed
        if column in seen:
            problems.append((where, f"'{column}' is partitioned twice; keep one entry"))
        seen.add(column)
        problems += [(where, why) for why in _column_problems(stream, column)]
        declared = stream.types.get(column)
        if transform != "identity" and declared not in (None, "timestamp", "date"):
            why = (
                f"{transform}() needs a timestamp or date column; "
                f"'types' declares '{column}' {declared}"
            )
            problems.append((where, why))
        if transform == "identity" and declared == "timestamp":
            why = (
                f"'{column}' is a timestamp: one partition per instant; "
                f'use "day({column})" or "month({column})"'
            )
            problems.append((where, why))
    for n, column in enumerate(stream.sort_by):
        where = f"sort_by[{n}]"
        if column in stream.sort_by[:n]:
            problems.append((where, f"'{column}' is named twice; keep one"))
        problems += [(where, why) for why in _column_problems(stream, column)]
    return problems


def _column_problems(stream: Stream, column: str) -> list[str]:
    """Why `column` (an API name after flatten) cannot be a column of the stream's table."""
    if column == "_rq_synced_at":  # when each row was synced: a column of every table
        return []
    if column.startswith("_rq_"):
        return [f"'{column}' is a system column; of those only _rq_synced_at may be named here"]
    if column in stream.expand:
        return [f"'{column}' is expanded into the child table {stream.child_table(column)}"]
    include = stream.fields.include if stream.fields else None
    if include is not None and column not in include and column not in stream.primary_key:
        return [f"'{column}' is left out by fields.include; add it there"]
    return []


def _template_problems(
    stream: Stream,
    where: str,
    values: typing.Mapping[str, JsonValue],
    *,
    cursor: bool = True,
    parent: bool = True,
) -> list[tuple[str, str]]:
    """Templates in a stream's requests: `{{cursor}}` (the saved cursor) and, for a child
    stream, `{{parent.COLUMN}}`. A `{{cursor}}` inside a longer value needs cursor_start: a
    first sync cannot leave part of a value out (it would drop the value's other filters)."""
    problems: list[tuple[str, str]] = []
    allowed = ["{{cursor}}"] if cursor else []
    allowed += ["{{parent.COLUMN}}"] if parent and stream.parent is not None else []
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        for name in sorted(set(placeholders(value))):
            if name == "cursor" and cursor:
                problems += _cursor_use_problems(stream, path, value)
            elif not (name.startswith("parent.") and parent and stream.parent is not None):
                what = f"stream {where or 'endpoint'}"
                may = f"may only use {' and '.join(allowed)}" if allowed else "takes no templates"
                hint = " (set the stream's 'parent')" if name.startswith("parent.") else ""
                problems.append((path, f"unknown template '{{{{{name}}}}}'; {what} {may}{hint}"))
    return problems


def _cursor_use_problems(stream: Stream, path: str, value: JsonValue) -> list[tuple[str, str]]:
    if stream.cursor_field is None:
        why = "'{{cursor}}' needs the stream's 'cursor_field' (the saved cursor it stands for)"
        return [(path, why)]
    embedded = any(
        "cursor" in set(placeholders(text)) and not is_only(text, "cursor")
        for text in strings(value)
    )
    if embedded and stream.cursor_start is None:
        why = (
            "'{{cursor}}' inside a longer value needs the stream's 'cursor_start' (the value "
            "it takes on a first sync), or the whole value would be left out"
        )
        return [(path, why)]
    return []


def _header_problems(where: str, headers: dict[str, str]) -> list[tuple[str, str]]:
    """Spec headers are stored in the clear: credentials go through `auth`."""
    secret = ("authorization", "proxy-authorization", "cookie")
    return [
        (f"{where}.{name}", f"'{name}' carries credentials: use 'auth' (stored encrypted)")
        for name in headers
        if name.lower() in secret
    ]


def _parent_problems(streams: list[Stream]) -> list[tuple[str, str]]:
    """A parent is another stream of the spec, and parents never form a cycle."""
    problems: list[tuple[str, str]] = []
    by_name = {s.name: s for s in streams}
    for i, stream in enumerate(streams):
        if stream.parent is None:
            continue
        name = stream.parent.stream
        if name == stream.name or name not in by_name:
            known = ", ".join(s for s in by_name if s != stream.name) or "none"
            why = f"'{name}' is not another stream of this spec (streams: {known})"
            problems.append((f"streams[{i}].parent.stream", why))
            continue
        seen: set[str] = {stream.name}
        parent: Stream | None = by_name[name]
        while parent is not None and parent.name not in seen:
            seen.add(parent.name)
            ref = parent.parent
            parent = by_name.get(ref.stream) if ref is not None else None
        if parent is not None:
            problems.append(
                (f"streams[{i}].parent.stream", f"parents form a cycle through '{name}'")
            )
        reserved = [c for c in stream.parent.fields if c.startswith("_rq_")]
        problems += [
            (f"streams[{i}].parent.fields.{c}", "names starting with '_rq_' are reserved")
            for c in reserved
        ]
    return problems


def _endpoint_problems(base_url: str, streams: list[Stream]) -> list[tuple[str, str]]:
    """An absolute endpoint must stay on base_url's origin (credentials go nowhere else)."""
    problems: list[tuple[str, str]] = []
    for i, stream in enumerate(streams):
        endpoint = stream.endpoint or ""
        absolute = "://" in endpoint or endpoint.startswith("//")
        if absolute and not same_origin(urljoin(base_url, endpoint), base_url):
            msg = f"'{endpoint}' is not on base_url's host; use a path such as \"/users\""
            problems.append((f"streams[{i}].endpoint", msg))
    return problems


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
