"""Auth flows: by hand with no I/O, then against real local servers (tests/support)."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import redis
from pydantic import TypeAdapter

from rawquery_workers.auth import build_auth
from rawquery_workers.auth.api_key import ApiKeyAuthenticator
from rawquery_workers.auth.basic import BasicAuthenticator
from rawquery_workers.auth.bearer import BearerAuthenticator
from rawquery_workers.auth.custom import CustomAuthenticator
from rawquery_workers.auth.oauth2 import OAuth2Authenticator
from rawquery_workers.distributed.redis_keys import oauth_lock_key
from rawquery_workers.errors import AuthError, RetriableError, SpecError
from rawquery_workers.http.redact import Redactor
from rawquery_workers.runner.locks import single_flight
from rawquery_workers.spec.credentials import Credentials
from rawquery_workers.spec.models import (
    ApiKeyAuth,
    Auth,
    BasicAuth,
    BearerAuth,
    CustomAuth,
    NoAuth,
    OAuth2Auth,
)
from rawquery_workers.spec.origin import Origin
from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.redis_server import RedisServer

BASE = "https://api.example.com/v1"
TOKEN_URL = "https://login.example.com/oauth/token"

# Canary secrets: none of these may ever show up in an exception's text.
TOKEN = "canary-token-5d1e"
PASSWORD = "canary-pass-91ab"
CLIENT_SECRET = "canary-client-secret-77c2"
REFRESH = "canary-refresh-0"
CANARIES = (TOKEN, PASSWORD, CLIENT_SECRET, REFRESH)


def assert_no_secrets(error: BaseException) -> None:
    text = str(error) + repr(error)
    for canary in CANARIES:
        assert canary not in text


# --- driving flows by hand -----------------------------------------------------------------


class Driver:
    """Runs `auth.sync_auth_flow` like httpx.Client does, with answers given by the test."""

    def __init__(self, auth: httpx.Auth, request: httpx.Request) -> None:
        self.flow = auth.sync_auth_flow(request)
        self.pending: httpx.Request | None = next(self.flow)

    def answer(self, status: int, **kwargs: Any) -> httpx.Request | None:
        """Answer the pending request; returns the next one, or None when the flow ended."""
        assert self.pending is not None, "the flow already ended"
        response = httpx.Response(status, request=self.pending, **kwargs)
        try:
            self.pending = self.flow.send(response)
        except StopIteration:
            self.pending = None
        return self.pending


def get(url: str = f"{BASE}/users?limit=10") -> httpx.Request:
    return httpx.Request("GET", url)


def form_of(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode()))


def oauth_spec(**changes: Any) -> OAuth2Auth:
    values: dict[str, Any] = {"type": "oauth2", "token_url": TOKEN_URL} | changes
    return OAuth2Auth.model_validate(values)


def oauth_creds(**changes: Any) -> Credentials:
    base = Credentials(client_id="client-1", client_secret=CLIENT_SECRET, refresh_token=REFRESH)
    return base.replace(**changes)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingLock:
    """A lock factory that records when it is held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entered = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self.lock:
            self.entered += 1
            yield


# --- origin rule ---------------------------------------------------------------------------


def test_origin_fills_default_ports_and_ignores_path() -> None:
    assert Origin.of("https://API.example.com/v1") == Origin.of("https://api.example.com:443/x")
    assert Origin.of("http://api.example.com") == Origin.of("http://api.example.com:80")
    assert Origin.of("http://api.example.com") != Origin.of("https://api.example.com")
    assert Origin.of("https://api.example.com") != Origin.of("https://api.example.com:8443")
    assert Origin.of("https://api.example.com") != Origin.of("https://evil.example.com")


@pytest.mark.parametrize(
    "auth",
    [
        lambda: BearerAuthenticator(Credentials(token=TOKEN), base_url=BASE),
        lambda: ApiKeyAuthenticator(
            ApiKeyAuth(type="api_key", query_param="key"), Credentials(token=TOKEN), base_url=BASE
        ),
        lambda: OAuth2Authenticator(oauth_spec(), oauth_creds(), base_url=BASE),
    ],
    ids=["bearer", "api_key_query", "oauth2"],
)
def test_other_origin_passes_through_untouched(auth: Any) -> None:
    request = get("https://cdn.example.net/page2?limit=10")
    driver = Driver(auth(), request)
    sent = driver.pending
    assert sent is request  # not a token request: no refresh for a foreign origin
    assert "authorization" not in sent.headers
    assert str(sent.url) == "https://cdn.example.net/page2?limit=10"
    assert driver.answer(401) is None  # a foreign 401 is handed back, not retried


# --- static kinds by hand ------------------------------------------------------------------


def test_bearer_sets_authorization() -> None:
    driver = Driver(BearerAuthenticator(Credentials(token=TOKEN), base_url=BASE), get())
    assert driver.pending is not None
    assert driver.pending.headers["Authorization"] == f"Bearer {TOKEN}"
    assert driver.answer(200) is None


def test_api_key_in_header_and_in_query() -> None:
    creds = Credentials(token=TOKEN)
    header = ApiKeyAuthenticator(
        ApiKeyAuth(type="api_key", header="X-API-Key"), creds, base_url=BASE
    )
    sent = Driver(header, get()).pending
    assert sent is not None and sent.headers["X-API-Key"] == TOKEN
    query = ApiKeyAuthenticator(ApiKeyAuth(type="api_key", query_param="key"), creds, base_url=BASE)
    sent = Driver(query, get()).pending
    assert sent is not None
    assert dict(sent.url.params) == {"limit": "10", "key": TOKEN}
    assert "x-api-key" not in sent.headers


def test_basic_encodes_user_and_password() -> None:
    auth = BasicAuthenticator(Credentials(username="me", password=PASSWORD), base_url=BASE)
    sent = Driver(auth, get()).pending
    assert sent is not None
    expected = base64.b64encode(f"me:{PASSWORD}".encode()).decode()
    assert sent.headers["Authorization"] == f"Basic {expected}"


@pytest.mark.parametrize(
    ("spec", "creds", "flags"),
    [
        (BearerAuth(type="bearer"), Credentials(), ["--auth-token"]),
        (ApiKeyAuth(type="api_key", header="X-Key"), Credentials(), ["--auth-token"]),
        (BasicAuth(type="basic"), Credentials(username="me"), ["--auth-pass"]),
        (
            oauth_spec(),
            Credentials(client_id="c", client_secret=CLIENT_SECRET),
            ["--refresh-token"],
        ),
        (
            oauth_spec(grant_type="client_credentials"),
            Credentials(client_secret=CLIENT_SECRET),
            ["--client-id"],
        ),
        (
            CustomAuth.model_validate({"type": "custom", "headers": {"X-Token": "{{auth.token}}"}}),
            Credentials(password=PASSWORD),
            ["--auth-token"],
        ),
    ],
    ids=["bearer", "api_key", "basic", "oauth2", "client_credentials", "custom"],
)
def test_missing_credentials_name_the_flag(spec: Any, creds: Credentials, flags: list[str]) -> None:
    with pytest.raises(AuthError) as info:
        build_auth(spec, creds, base_url=BASE)
    message = str(info.value)
    assert message.startswith("connection needs ")
    assert f"(auth type {spec.type})" in message
    for flag in flags:
        assert flag in message
    assert_no_secrets(info.value)


def test_build_auth_picks_the_class_for_each_kind() -> None:
    creds = Credentials(token=TOKEN, username="me", password=PASSWORD)
    assert build_auth(NoAuth(type="none"), Credentials(), base_url=BASE) is None
    pairs = [
        (ApiKeyAuth(type="api_key", header="X-Key"), creds, ApiKeyAuthenticator),
        (BearerAuth(type="bearer"), creds, BearerAuthenticator),
        (BasicAuth(type="basic"), creds, BasicAuthenticator),
        (oauth_spec(), oauth_creds(), OAuth2Authenticator),
        (CustomAuth(type="custom"), creds, CustomAuthenticator),
    ]
    for spec, given, cls in pairs:
        assert type(build_auth(spec, given, base_url=BASE)) is cls


# --- OAuth2 by hand ------------------------------------------------------------------------


def token_reply(access: str, refresh: str | None = None, expires_in: int = 1800) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": access, "expires_in": expires_in}
    if refresh:
        body["refresh_token"] = refresh
    return {"json": body}


def test_oauth2_flow_refreshes_persists_then_retries_once_on_401() -> None:
    events: list[str] = []
    clock = FakeClock()

    def saved(new: Credentials) -> None:
        events.append(f"saved {new.access_token} {new.refresh_token}")

    auth = OAuth2Authenticator(
        oauth_spec(refresh_url="https://login.example.com/oauth/refresh"),
        oauth_creds(),
        base_url=BASE,
        on_credentials=saved,
        clock=clock,
    )
    driver = Driver(auth, get())
    token_request = driver.pending
    assert token_request is not None
    assert token_request.method == "POST"
    assert str(token_request.url) == "https://login.example.com/oauth/refresh"
    assert form_of(token_request) == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
        "client_id": "client-1",
        "client_secret": CLIENT_SECRET,
    }

    api_request = driver.answer(200, **token_reply("access-1", "refresh-1"))
    assert events == ["saved access-1 refresh-1"]  # persisted before first use
    assert api_request is not None
    assert api_request.headers["Authorization"] == "Bearer access-1"
    assert auth.credentials.access_token_expires_at == clock.now + 1800

    second_token_request = driver.answer(401)  # the token was revoked mid-sync
    assert second_token_request is not None
    assert form_of(second_token_request)["refresh_token"] == "refresh-1"  # the rotated one
    retried = driver.answer(200, **token_reply("access-2", "refresh-2"))
    assert events[-1] == "saved access-2 refresh-2"
    assert retried is not None and retried.headers["Authorization"] == "Bearer access-2"
    assert driver.answer(401) is None  # a second 401 goes back to the client


def test_oauth2_keeps_refresh_token_when_provider_does_not_rotate() -> None:
    auth = OAuth2Authenticator(oauth_spec(), oauth_creds(), base_url=BASE)
    driver = Driver(auth, get())
    driver.answer(200, json={"access_token": "access-1"})
    assert auth.credentials.refresh_token == REFRESH
    assert auth.credentials.access_token_expires_at is None


def test_oauth2_accepts_form_encoded_token_response() -> None:
    auth = OAuth2Authenticator(oauth_spec(), oauth_creds(), base_url=BASE)
    driver = Driver(auth, get())
    sent = driver.answer(
        200,
        content=b"access_token=access-1&expires_in=60&scope=read",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert sent is not None and sent.headers["Authorization"] == "Bearer access-1"


@pytest.mark.parametrize(("expires_in", "refreshes"), [(30.0, True), (61.0, False), (None, False)])
def test_oauth2_refreshes_a_token_that_expires_within_60_seconds(
    expires_in: float | None, refreshes: bool
) -> None:
    clock = FakeClock()
    expires_at = None if expires_in is None else clock.now + expires_in
    creds = oauth_creds(access_token="access-0", access_token_expires_at=expires_at)
    auth = OAuth2Authenticator(oauth_spec(), creds, base_url=BASE, clock=clock)
    first = Driver(auth, get()).pending
    assert first is not None
    if refreshes:
        assert str(first.url) == TOKEN_URL
    else:
        assert first.headers["Authorization"] == "Bearer access-0"


def test_oauth2_client_credentials_sends_scopes() -> None:
    spec = oauth_spec(grant_type="client_credentials", scopes=["crm.read", "crm.write"])
    auth = OAuth2Authenticator(
        spec, Credentials(client_id="client-1", client_secret=CLIENT_SECRET), base_url=BASE
    )
    token_request = Driver(auth, get()).pending
    assert token_request is not None
    assert form_of(token_request) == {
        "grant_type": "client_credentials",
        "client_id": "client-1",
        "client_secret": CLIENT_SECRET,
        "scope": "crm.read crm.write",
    }


def test_oauth2_waiter_reloads_a_token_refreshed_elsewhere() -> None:
    """Single flight: under the lock, a token another worker stored is used as is."""
    lock = RecordingLock()
    clock = FakeClock()
    stored = oauth_creds(
        access_token="access-9",
        refresh_token="refresh-9",
        access_token_expires_at=clock.now + 1800,
    )
    auth = OAuth2Authenticator(
        oauth_spec(),
        oauth_creds(access_token="access-0"),
        base_url=BASE,
        refresh_lock=lock,
        reload=lambda: stored,
        clock=clock,
    )
    driver = Driver(auth, get())
    assert driver.pending is not None
    assert driver.pending.headers["Authorization"] == "Bearer access-0"
    retried = driver.answer(401)
    assert lock.entered == 1
    assert retried is not None and retried.headers["Authorization"] == "Bearer access-9"
    assert auth.credentials.refresh_token == "refresh-9"


def test_oauth2_lock_is_released_when_the_client_abandons_the_flow() -> None:
    lock = RecordingLock()
    auth = OAuth2Authenticator(oauth_spec(), oauth_creds(), base_url=BASE, refresh_lock=lock)
    driver = Driver(auth, get())
    assert lock.lock.locked()  # the token request is in flight
    driver.flow.close()  # what httpx does when sending it raised
    assert not lock.lock.locked()


def test_oauth2_token_error_names_provider_error_but_no_secret() -> None:
    auth = OAuth2Authenticator(oauth_spec(), oauth_creds(), base_url=BASE)
    driver = Driver(auth, get())
    body = {"error": "invalid_client", "error_description": f"bad secret {CLIENT_SECRET}"}
    with pytest.raises(AuthError) as info:
        driver.answer(401, json=body)
    message = str(info.value)
    assert "invalid_client (bad secret ***)" in message
    assert "HTTP 401" in message and TOKEN_URL in message
    assert "--refresh-token" in message
    assert_no_secrets(info.value)


def test_oauth2_token_endpoint_5xx_is_retriable() -> None:
    auth = OAuth2Authenticator(oauth_spec(), oauth_creds(), base_url=BASE)
    driver = Driver(auth, get())
    with pytest.raises(RetriableError) as info:
        driver.answer(503, text="<html>down</html>")
    assert info.value.status == 503
    assert_no_secrets(info.value)


def test_oauth2_token_response_without_access_token() -> None:
    auth = OAuth2Authenticator(oauth_spec(), oauth_creds(), base_url=BASE)
    driver = Driver(auth, get())
    with pytest.raises(AuthError, match="answered without an access_token"):
        driver.answer(200, json={"token_type": "bearer"})


# --- custom by hand ------------------------------------------------------------------------

SESSION_SPEC = {
    "type": "custom",
    "pre_request": {
        "url": "https://api.example.com/auth/session?tenant={{auth.token}}",
        "method": "POST",
        "body": {"login": {"user": "{{auth.username}}", "pass": "{{auth.password}}"}},
        "headers": {"X-Api-Key": "{{auth.token}}"},
        "extract": {"session_token": "response.data.token", "tenant": "response.data.tenant"},
    },
    "headers": {"X-Session-Token": "{{session_token}}"},
    "params": {"tenant": "{{tenant}}", "key": "{{auth.token}}"},
}
CUSTOM_CREDS = Credentials(username="me", password=PASSWORD, token=TOKEN)


def session_reply(token: str) -> dict[str, Any]:
    return {"json": {"data": {"token": token, "tenant": 42}}}


def test_custom_logs_in_once_then_again_once_on_401() -> None:
    auth = CustomAuthenticator(CustomAuth.model_validate(SESSION_SPEC), CUSTOM_CREDS, base_url=BASE)
    driver = Driver(auth, get())
    login = driver.pending
    assert login is not None
    assert login.method == "POST"
    assert login.url.params["tenant"] == TOKEN
    assert login.headers["X-Api-Key"] == TOKEN
    assert httpx.Response(200, content=login.content).json() == {
        "login": {"user": "me", "pass": PASSWORD}
    }
    assert "x-session-token" not in login.headers

    sent = driver.answer(200, **session_reply("sess-1"))
    assert sent is not None
    assert sent.headers["X-Session-Token"] == "sess-1"
    assert dict(sent.url.params) == {"limit": "10", "tenant": "42", "key": TOKEN}
    assert driver.answer(200) is None

    # The session is reused by the next request: no second login.
    next_request = Driver(auth, get()).pending
    assert next_request is not None and next_request.headers["X-Session-Token"] == "sess-1"

    expired = Driver(auth, get())
    relogin = expired.answer(401)
    assert relogin is not None and str(relogin.url).startswith("https://api.example.com/auth/")
    retried = expired.answer(200, **session_reply("sess-2"))
    assert retried is not None and retried.headers["X-Session-Token"] == "sess-2"
    assert expired.answer(401) is None


def test_custom_extracted_values_join_the_connection_redactor_at_once() -> None:
    redactor = Redactor.for_auth(CustomAuth.model_validate(SESSION_SPEC), CUSTOM_CREDS)
    auth = build_auth(
        CustomAuth.model_validate(SESSION_SPEC), CUSTOM_CREDS, base_url=BASE, redactor=redactor
    )
    assert auth is not None
    driver = Driver(auth, get())
    assert "sess-canary-1" not in redactor.secrets
    sent = driver.answer(200, **session_reply("sess-canary-1"))
    assert sent is not None and "sess-canary-1" in redactor.secrets  # before it is used
    echoed = f"{BASE}/users?page=2&s=sess-canary-1"
    assert redactor.strip_params(echoed, by_name=False) == f"{BASE}/users?page=2"
    assert redactor.scrub_state({"url": echoed}) == {"url": f"{BASE}/users?page=2"}
    assert redactor.redact("session sess-canary-1 expired") == "session *** expired"


def test_oauth2_tokens_issued_or_reloaded_join_the_connection_redactor() -> None:
    clock = FakeClock()
    redactor = Redactor()
    stored = oauth_creds(
        access_token="access-from-elsewhere", access_token_expires_at=clock.now + 1800
    )
    auth = OAuth2Authenticator(
        oauth_spec(),
        oauth_creds(access_token="access-0"),
        base_url=BASE,
        reload=lambda: stored,
        clock=clock,
        redactor=redactor,
    )
    assert {CLIENT_SECRET, "access-0"} <= redactor.secrets
    driver = Driver(auth, get())
    assert driver.answer(401) is not None  # retried with the token another worker stored
    assert "access-from-elsewhere" in redactor.secrets


def test_custom_without_login_templates_headers_and_params() -> None:
    spec = CustomAuth.model_validate(
        {"type": "custom", "headers": {"X-User": "{{auth.username}}"}, "params": {"sig": "x"}}
    )
    driver = Driver(CustomAuthenticator(spec, CUSTOM_CREDS, base_url=BASE), get())
    assert driver.pending is not None
    assert driver.pending.headers["X-User"] == "me"
    assert driver.pending.url.params["sig"] == "x"
    assert driver.answer(401) is None  # nothing to log in again with


def test_custom_missing_extract_path_fails_with_the_path() -> None:
    auth = CustomAuthenticator(CustomAuth.model_validate(SESSION_SPEC), CUSTOM_CREDS, base_url=BASE)
    driver = Driver(auth, get())
    with pytest.raises(AuthError) as info:
        driver.answer(200, json={"data": {"token": "sess-1"}})
    message = str(info.value)
    assert "response.data.tenant" in message
    assert "https://api.example.com/auth/session" in message
    assert "?" not in message  # the query (with its templated token) is left out
    assert_no_secrets(info.value)


def test_custom_login_answer_that_is_not_json() -> None:
    auth = CustomAuthenticator(CustomAuth.model_validate(SESSION_SPEC), CUSTOM_CREDS, base_url=BASE)
    driver = Driver(auth, get())
    with pytest.raises(AuthError, match="not JSON"):
        driver.answer(200, text="<html>login</html>")


def test_custom_unknown_template_is_a_spec_error() -> None:
    # The spec validator rejects unknown names; model_construct skips it to reach render.
    spec = CustomAuth.model_construct(
        type="custom", pre_request=None, headers={"X-Key": "{{nope}}"}, params={}
    )
    auth = CustomAuthenticator(spec, CUSTOM_CREDS, base_url=BASE)
    with pytest.raises(SpecError) as info:
        Driver(auth, get())
    assert "{{nope}}" in str(info.value) and "auth.headers.X-Key" in str(info.value)
    assert_no_secrets(info.value)


# --- against real servers: static kinds ----------------------------------------------------


@pytest.fixture(scope="module")
def two_servers() -> Iterator[tuple[ApiServer, ApiServer]]:
    """Two servers on different ports: different origins. Shared by the module's tests."""
    with ApiServer() as ours, ApiServer() as other:
        for server in (ours, other):
            server.route("/users", lambda req: Reply({"data": []}))
        yield ours, other


def fetch(auth: httpx.Auth | None, url: str) -> httpx.Response:
    with httpx.Client(auth=auth, timeout=10) as client:
        return client.get(url)


@pytest.mark.parametrize(
    ("spec", "check"),
    [
        (
            {"type": "bearer"},
            lambda r: r.header("authorization") == f"Bearer {TOKEN}",
        ),
        (
            {"type": "api_key", "header": "X-API-Key"},
            lambda r: r.header("x-api-key") == TOKEN,
        ),
        (
            {"type": "api_key", "query_param": "api_key"},
            lambda r: r.params == {"page": "1", "api_key": TOKEN},
        ),
        (
            {"type": "basic"},
            lambda r: (
                r.header("authorization")
                == "Basic " + base64.b64encode(f"me:{PASSWORD}".encode()).decode()
            ),
        ),
        (
            {"type": "custom", "headers": {"X-Token": "{{auth.token}}"}, "params": {"u": "me"}},
            lambda r: r.header("x-token") == TOKEN and r.params == {"page": "1", "u": "me"},
        ),
    ],
    ids=["bearer", "api_key_header", "api_key_query", "basic", "custom"],
)
def test_each_kind_signs_requests_to_its_server_only(
    two_servers: tuple[ApiServer, ApiServer], spec: dict[str, Any], check: Any
) -> None:
    echo_server, other_server = two_servers
    seen = len(echo_server.requests), len(other_server.requests)
    auth_spec = TypeAdapter(Auth).validate_python(spec)
    creds = Credentials(token=TOKEN, username="me", password=PASSWORD)
    auth = build_auth(auth_spec, creds, base_url=f"{echo_server.url}/v1")
    assert fetch(auth, f"{echo_server.url}/users?page=1").status_code == 200
    assert fetch(auth, f"{other_server.url}/users?page=1").status_code == 200
    [signed] = echo_server.requests[seen[0] :]
    assert check(signed)
    [foreign] = other_server.requests[seen[1] :]
    assert foreign.params == {"page": "1"}
    assert not {"authorization", "x-api-key", "x-token"} & set(foreign.headers)
    assert not any(canary in str(foreign.headers) for canary in CANARIES)


# --- against real servers: OAuth2 with rotating refresh tokens (HubSpot-style) -------------


class RotatingProvider:
    """A token endpoint that issues a new refresh token each time and rejects the old one,
    and an API that accepts only the latest access token."""

    def __init__(self, server: ApiServer, saved: list[Credentials]) -> None:
        self.server = server
        self.saved = saved
        self.refresh_token = REFRESH
        self.access_token: str | None = None
        self.issued = 0
        self.always_401 = False
        self.tokens_saved_when_used: list[tuple[str, str | None]] = []
        server.route("/oauth/v1/token", self.token, methods=("POST",))
        server.route("/crm/v3/objects/contacts", self.contacts)

    @property
    def token_url(self) -> str:
        return f"{self.server.url}/oauth/v1/token"

    def token(self, request: RecordedRequest) -> Reply:
        form = dict(parse_qsl(request.body.decode()))
        if form.get("client_id") != "client-1" or form.get("client_secret") != CLIENT_SECRET:
            return Reply({"error": "invalid_client", "error_description": "unknown client"}, 401)
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != (
            self.refresh_token
        ):
            # Like some real providers, echo what was sent: the auth must mask it.
            description = f"refresh token {form.get('refresh_token')} is not valid"
            return Reply({"error": "invalid_grant", "error_description": description}, 400)
        self.issued += 1
        self.access_token = f"access-{self.issued}"
        self.refresh_token = f"refresh-{self.issued}"
        return Reply(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_in": 1800,
                "token_type": "bearer",
            }
        )

    def contacts(self, request: RecordedRequest) -> Reply:
        header = request.header("authorization")
        if self.always_401 or self.access_token is None or header != f"Bearer {self.access_token}":
            return Reply({"status": "error", "category": "EXPIRED_AUTHENTICATION"}, 401)
        latest = self.saved[-1] if self.saved else None
        self.tokens_saved_when_used.append(
            (self.access_token, latest.access_token if latest else None)
        )
        return Reply({"results": [{"id": "1"}]})

    def revoke(self) -> None:
        self.access_token = "revoked"

    def token_calls(self) -> list[dict[str, str]]:
        return [
            dict(parse_qsl(r.body.decode())) for r in self.server.requests_to("/oauth/v1/token")
        ]


@pytest.fixture
def provider(api_server: ApiServer) -> RotatingProvider:
    return RotatingProvider(api_server, saved=[])


def hubspot_auth(provider: RotatingProvider, **kwargs: Any) -> OAuth2Authenticator:
    spec = oauth_spec(token_url=provider.token_url, refresh_url=provider.token_url)
    kwargs.setdefault("on_credentials", provider.saved.append)
    auth = build_auth(spec, oauth_creds(), base_url=provider.server.url, **kwargs)
    assert isinstance(auth, OAuth2Authenticator)
    return auth


def contacts_url(provider: RotatingProvider) -> str:
    return f"{provider.server.url}/crm/v3/objects/contacts"


def test_oauth2_refresh_before_sync_persists_the_rotated_token_first(
    provider: RotatingProvider,
) -> None:
    auth = hubspot_auth(provider)
    auth.refresh()  # the refresh-auth step; its own short-lived client
    assert [c.refresh_token for c in provider.saved] == ["refresh-1"]
    assert provider.saved[0].access_token == "access-1"
    assert provider.server.requests_to("/crm/v3/objects/contacts") == []

    with httpx.Client(auth=auth, timeout=10) as client:
        for _ in range(3):
            assert client.get(contacts_url(provider)).status_code == 200
    assert len(provider.token_calls()) == 1  # the token is reused while valid
    assert provider.tokens_saved_when_used == [("access-1", "access-1")] * 3


def test_oauth2_ensure_fresh_refreshes_only_a_missing_or_expiring_token(
    provider: RotatingProvider,
) -> None:
    auth = hubspot_auth(provider)
    auth.ensure_fresh()  # no access token yet: one exchange
    auth.ensure_fresh()  # still valid: none
    assert [c.refresh_token for c in provider.saved] == ["refresh-1"]
    assert len(provider.token_calls()) == 1


def test_oauth2_401_mid_sync_refreshes_once_with_the_rotated_token(
    provider: RotatingProvider,
) -> None:
    with httpx.Client(timeout=10) as token_client:
        auth = hubspot_auth(provider, token_client=token_client)
        auth.refresh()
    with httpx.Client(auth=auth, timeout=10) as client:
        assert client.get(contacts_url(provider)).status_code == 200
        provider.revoke()
        assert client.get(contacts_url(provider)).status_code == 200
    calls = provider.token_calls()
    assert [c["refresh_token"] for c in calls] == [REFRESH, "refresh-1"]
    assert [c.refresh_token for c in provider.saved] == ["refresh-1", "refresh-2"]
    # Each new access token had been handed to the callback before the API saw it.
    assert provider.tokens_saved_when_used == [("access-1", "access-1"), ("access-2", "access-2")]
    assert [
        r.header("authorization") for r in provider.server.requests_to("/crm/v3/objects/contacts")
    ] == ["Bearer access-1", "Bearer access-1", "Bearer access-2"]


def test_oauth2_second_401_is_returned_after_one_refresh(provider: RotatingProvider) -> None:
    auth = hubspot_auth(provider)
    auth.refresh()
    provider.always_401 = True
    with httpx.Client(auth=auth, timeout=10) as client:
        response = client.get(contacts_url(provider))
    assert response.status_code == 401
    assert len(provider.server.requests_to("/crm/v3/objects/contacts")) == 2
    assert len(provider.token_calls()) == 2  # before the sync, and once for the 401


def test_oauth2_reused_refresh_token_is_refused_without_leaking_it(
    provider: RotatingProvider,
) -> None:
    hubspot_auth(provider).refresh()  # rotates REFRESH away
    stale = hubspot_auth(provider)  # built from the original credentials
    with pytest.raises(AuthError) as info:
        stale.refresh()
    message = str(info.value)
    assert "HTTP 400: invalid_grant (refresh token *** is not valid)" in message
    assert "/oauth/v1/token" in message
    assert_no_secrets(info.value)


def test_oauth2_single_flight_second_worker_reuses_stored_tokens(
    provider: RotatingProvider,
) -> None:
    """Two workers share a lock and a store: only the first one spends the refresh token."""
    store: list[Credentials] = [oauth_creds()]
    lock = RecordingLock()

    def save(new: Credentials) -> None:
        store.append(new)
        provider.saved.append(new)

    workers = [
        hubspot_auth(provider, on_credentials=save, refresh_lock=lock, reload=lambda: store[-1])
        for _ in range(2)
    ]
    for worker in workers:
        worker.refresh()
    assert len(provider.token_calls()) == 1
    assert lock.entered == 2
    assert workers[1].credentials.access_token == "access-1"
    with httpx.Client(auth=workers[1], timeout=10) as client:
        assert client.get(contacts_url(provider)).status_code == 200


@pytest.mark.redis
def test_oauth2_single_flight_on_the_redis_lock_lets_one_racing_worker_refresh(
    provider: RotatingProvider, shared_redis_server: RedisServer
) -> None:
    """Four workers refresh at once under `locks.single_flight`: one token request."""
    client = redis.Redis.from_url(shared_redis_server.url)
    key = oauth_lock_key("oauth-race")
    store: list[Credentials] = [oauth_creds()]

    def refresh_lock() -> contextlib.AbstractContextManager[object]:
        return single_flight(client, key, ttl=5)

    workers = [
        hubspot_auth(
            provider,
            on_credentials=store.append,
            refresh_lock=refresh_lock,
            reload=lambda: store[-1],
        )
        for _ in range(4)
    ]
    start = threading.Barrier(len(workers))
    errors: list[Exception] = []

    def run(worker: OAuth2Authenticator) -> None:
        start.wait(10)
        try:
            worker.refresh()
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(provider.token_calls()) == 1
    assert {worker.credentials.access_token for worker in workers} == {"access-1"}
    assert not client.exists(key)
    client.close()


def test_oauth2_client_credentials_on_a_separate_identity_server(
    api_server: ApiServer,
) -> None:
    with ApiServer() as idp:
        idp.route(
            "/token",
            lambda req: Reply({"access_token": "cc-1", "expires_in": 3600}),
            methods=("POST",),
        )
        api_server.route(
            "/things",
            lambda req: Reply({}, 200 if req.header("authorization") == "Bearer cc-1" else 401),
        )
        spec = oauth_spec(
            token_url=f"{idp.url}/token", grant_type="client_credentials", scopes=["a", "b"]
        )
        creds = Credentials(client_id="client-1", client_secret=CLIENT_SECRET)
        auth = build_auth(spec, creds, base_url=api_server.url)
        assert fetch(auth, f"{api_server.url}/things").status_code == 200
        [call] = idp.requests_to("/token")
        assert dict(parse_qsl(call.body.decode())) == {
            "grant_type": "client_credentials",
            "client_id": "client-1",
            "client_secret": CLIENT_SECRET,
            "scope": "a b",
        }
        assert call.header("authorization") is None


def test_oauth2_unreachable_token_endpoint_is_retriable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    spec = oauth_spec(token_url=f"http://127.0.0.1:{port}/token")
    auth = build_auth(spec, oauth_creds(), base_url=BASE)
    assert isinstance(auth, OAuth2Authenticator)
    with pytest.raises(RetriableError, match="ConnectError") as info:
        auth.refresh()
    assert_no_secrets(info.value)


# --- against a real server: custom session login -------------------------------------------


class SessionApi:
    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.session: str | None = None
        self.logins = 0
        self.login_status = 200
        self.refuse_all = False
        server.route("/auth/session", self.login, methods=("POST",))
        server.route("/items", self.items)

    def login(self, request: RecordedRequest) -> Reply:
        if self.login_status != 200:
            return Reply({"error": "forbidden"}, self.login_status)
        if request.json() != {"username": "me", "password": PASSWORD}:
            return Reply({"error": "bad login"}, 401)
        self.logins += 1
        self.session = f"sess-{self.logins}"
        return Reply({"data": {"token": self.session, "expires": 3600}})

    def items(self, request: RecordedRequest) -> Reply:
        token = request.header("x-session-token")
        if self.refuse_all or self.session is None or token != self.session:
            return Reply({"error": "session expired"}, 401)
        return Reply({"items": [1, 2]})

    def spec(self, query: str = "") -> CustomAuth:
        return CustomAuth.model_validate(
            {
                "type": "custom",
                "pre_request": {
                    "url": f"{self.server.url}/auth/session{query}",
                    "method": "POST",
                    "body": {"username": "{{auth.username}}", "password": "{{auth.password}}"},
                    "extract": {"session_token": "response.data.token"},
                },
                "headers": {"X-Session-Token": "{{session_token}}"},
            }
        )


def test_custom_session_login_and_relogin_on_401(api_server: ApiServer) -> None:
    api = SessionApi(api_server)
    auth = build_auth(api.spec(), CUSTOM_CREDS, base_url=api_server.url)
    with httpx.Client(auth=auth, timeout=10) as client:
        for _ in range(3):
            assert client.get(f"{api_server.url}/items").status_code == 200
        assert api.logins == 1  # logged in lazily, once
        api.session = "expired-on-the-server"
        assert client.get(f"{api_server.url}/items").status_code == 200
        assert api.logins == 2
        login = api_server.requests_to("/auth/session")[0]
        assert login.header("x-session-token") is None
        assert login.header("content-type") == "application/json"

        api.refuse_all = True  # every session is refused from now on
        response = client.get(f"{api_server.url}/items")
    assert response.status_code == 401  # re-logged in once, then handed back
    assert api.logins == 3


def test_custom_login_failure_names_url_and_status(api_server: ApiServer) -> None:
    api = SessionApi(api_server)
    api.login_status = 403
    spec = api.spec(query="?key={{auth.token}}")
    auth = build_auth(spec, CUSTOM_CREDS, base_url=api_server.url)
    with pytest.raises(AuthError) as info:
        fetch(auth, f"{api_server.url}/items")
    message = str(info.value)
    assert f"custom auth login POST {api_server.url}/auth/session was refused" in message
    assert "HTTP 403" in message and "--auth-pass" in message
    assert "?" not in message
    assert_no_secrets(info.value)
    assert api_server.requests_to("/items") == []
