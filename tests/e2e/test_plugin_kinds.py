"""A kind is one class plus one union member: a pagination kind and an auth kind written
here, in this test module alone, join the spec with `register_kind` and sync end to end
(`rq connect`, `rq connections sync`) against a real local HTTP server.

Nothing in the product names them: `parse_spec` accepts them, `rq spec schema` and the
reference describe them, `rq connect` asks for the credential the auth kind declares,
the redactor masks the header it declares, and the paginator and flow are the ones the
models build.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Unpack

import httpx
import pytest
from pydantic import Field, JsonValue

from rawquery_workers.auth import AuthContext, build_auth
from rawquery_workers.auth.base import Flow, OriginBoundAuth, missing_error
from rawquery_workers.http.redact import MASK, Redactor
from rawquery_workers.paginate import PageResponse, Paginator, PaginatorOptions, RequestSpec
from rawquery_workers.registry.credential_origins import destinations
from rawquery_workers.spec import parse_spec
from rawquery_workers.spec.credentials import Credentials
from rawquery_workers.spec.models import (
    AuthKind,
    PaginationKind,
    register_kind,
    unregister_kind,
)
from rawquery_workers.spec.reference import render_reference
from rawquery_workers.spec.schema import spec_json_schema
from tests.e2e.helpers import Cli, rows, status_streams
from tests.support.api_server import ApiServer, RecordedRequest, Reply

KEY = "CANARY-signing-key-3b9e"
ITEMS = [{"id": i, "name": f"item {i}"} for i in range(1, 8)]
PAGE = 3

# --- the pagination kind: a next-page token in a response header ----------------------------


class HeaderTokenPagination(PaginationKind):
    """The next page's token in a response header, sent back as a query parameter; ends when
    the header is missing or empty."""

    type: Literal["header_token"]
    header: str = Field(default="X-Next-Page", description="Response header with the token.")
    param: str = Field(default="page_token", description="Query parameter that carries it.")

    def paginator(self, **options: Unpack[PaginatorOptions]) -> Paginator:
        return HeaderTokenPaginator(self, **options)


class HeaderTokenPaginator(Paginator):
    def __init__(self, spec: HeaderTokenPagination, **options: Unpack[PaginatorOptions]) -> None:
        super().__init__(**options)
        self.spec = spec
        self.token: str | None = None  # None: the first page

    def _at_position(self, request: RequestSpec) -> RequestSpec:
        return request.with_params({self.spec.param: self.token}) if self.token else request

    def _advance(self, response: PageResponse, records_count: int) -> None:
        token = response.header(self.spec.header)
        if not token:
            self.has_next_page = False
            return
        self._remember(token, "next-page token")
        self.token = token

    def state(self) -> dict[str, JsonValue]:
        return {"token": self.token}

    def restore(self, state: Mapping[str, JsonValue]) -> None:
        token = state.get("token")
        if not isinstance(token, str):
            raise ValueError(f"header_token pagination state needs a 'token': {state}")
        self.token = token
        self.has_next_page = True


# --- the auth kind: each request signed with an HMAC of its method and path -----------------


def signature(key: str, method: str, path: str) -> str:
    return hmac.new(key.encode(), f"{method} {path}".encode(), hashlib.sha256).hexdigest()


class SignedAuth(AuthKind):
    """Each request carries `hex(HMAC-SHA256(--auth-token, "METHOD PATH"))` in a header."""

    type: Literal["signed"]
    header: str = Field(default="X-Signature", description="Header that carries the signature.")

    def credential_fields(self) -> tuple[str, ...]:
        return ("token",)

    def credential_headers(self) -> tuple[str, ...]:
        return (self.header,)

    def authenticator(self, credentials: Credentials, context: AuthContext) -> httpx.Auth:
        return SignedAuthenticator(self, credentials, base_url=context.base_url)


class SignedAuthenticator(OriginBoundAuth):
    def __init__(self, spec: SignedAuth, credentials: Credentials, *, base_url: str) -> None:
        super().__init__(base_url)
        if not credentials.token:
            raise missing_error(spec.type, ["token"])
        self._key = credentials.token
        self._header = spec.header

    def authenticated_flow(self, request: httpx.Request) -> Flow:
        request.headers[self._header] = signature(self._key, request.method, request.url.path)
        yield request


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def toy_kinds() -> Iterator[None]:
    """The two kinds are spec kinds for the length of one test."""
    register_kind(HeaderTokenPagination)
    register_kind(SignedAuth)
    try:
        yield
    finally:
        unregister_kind(SignedAuth)
        unregister_kind(HeaderTokenPagination)


@pytest.fixture
def toy_api(api_server: ApiServer) -> ApiServer:
    """Items in pages of 3, the next page's offset as an opaque token in `X-Next-Page`;
    a request without the right signature gets 401."""

    def items(request: RecordedRequest) -> Reply:
        if request.header("x-signature") != signature(KEY, "GET", request.path):
            return Reply({"error": "bad signature"}, status=401)
        start = int(request.params.get("page_token", "0").removeprefix("tok-"))
        more = start + PAGE < len(ITEMS)
        headers: dict[str, str | list[str]] = {"X-Next-Page": f"tok-{start + PAGE}"} if more else {}
        return Reply({"items": ITEMS[start : start + PAGE]}, headers=headers)

    api_server.route("/items", items)
    return api_server


def toy_spec(base_url: str) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": base_url,
        "auth": {"type": "signed"},
        "streams": [
            {
                "name": "items",
                "endpoint": "/items",
                "data_path": "items",
                "primary_key": ["id"],
                "pagination": {"type": "header_token"},
            }
        ],
    }


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("toy_kinds")
def test_new_kinds_sync_end_to_end(
    cli: Cli, toy_api: ApiServer, write_spec: Callable[..., Path]
) -> None:
    path = str(write_spec(toy_spec(toy_api.url)))
    assert cli("spec", "validate", path).code == 0

    refused = cli("connect", "toy", "--spec", path)
    assert refused.code == 2 and "'signed' auth needs --auth-token" in refused.err

    assert cli("connect", "toy", "--spec", path, "--auth-token", KEY).code == 0
    synced = cli("connections", "sync", "toy")
    assert synced.code == 0, synced.err

    assert rows("toy", "items") == ITEMS
    sent = toy_api.requests_to("/items")
    assert [r.params.get("page_token") for r in sent] == [None, "tok-3", "tok-6"]
    status = status_streams(cli, "toy")["items"]
    assert (status["status"], status["rows"]) == ("succeeded", len(ITEMS))
    assert KEY not in synced.out + synced.err + str(status)


@pytest.mark.usefixtures("toy_kinds")
def test_new_kinds_are_described_checked_and_redacted_like_built_in_ones() -> None:
    spec = parse_spec(toy_spec("https://api.example.com"))
    assert isinstance(spec.auth, SignedAuth)
    assert isinstance(spec.streams[0].pagination, HeaderTokenPagination)

    schema = spec_json_schema()
    assert set(schema["properties"]["auth"]["discriminator"]["mapping"]) >= {"signed", "none"}
    reference = render_reference()
    assert "## pagination: header_token" in reference and "## auth: signed" in reference
    assert '| `header` | string |  | `"X-Signature"` | Header that carries the' in reference

    assert spec.auth.required_credentials(Credentials()) == ["--auth-token"]
    assert destinations(spec) == {"base_url": destinations(spec)["base_url"]}
    redactor = Redactor.for_auth(spec.auth, Credentials(token=KEY))
    assert redactor.redact_headers({"X-Signature": "abc"}) == {"X-Signature": MASK}
    auth = build_auth(spec.auth, Credentials(token=KEY), base_url=spec.base_url)
    assert isinstance(auth, SignedAuthenticator)


def test_a_kind_is_unknown_until_registered(cli: Cli, write_spec: Callable[..., Path]) -> None:
    result = cli("spec", "validate", str(write_spec(toy_spec("https://api.example.com"))))
    assert result.code == 2
    assert "auth.type: unknown auth type 'signed'; expected one of none, api_key" in result.err
    assert "streams[0].pagination.type: unknown pagination type 'header_token'" in result.err
    with pytest.raises(ValueError, match="already"):
        register_kind(ClashingPagination)
    with pytest.raises(TypeError, match="AuthKind or PaginationKind"):
        register_kind(Credentials)  # type: ignore[arg-type]


class ClashingPagination(PaginationKind):
    """Claims the `type` of a built-in kind."""

    type: Literal["offset"]

    def paginator(self, **options: Unpack[PaginatorOptions]) -> Paginator:
        raise NotImplementedError
