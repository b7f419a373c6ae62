"""The API client against a real local HTTP server: retries, Retry-After, faults, the
credentials-origin rule, error messages and redaction."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import httpx
import pytest

from rawquery_workers.errors import (
    AuthError,
    ResponseError,
    RetriableError,
    SourceError,
)
from rawquery_workers.http.client import (
    MAX_JSON_DEPTH,
    OutOfTime,
    RetryPolicy,
    build_client,
    error_for_status,
    join_url,
    parse_retry_after,
    response_limits,
)
from rawquery_workers.http.ratelimit import TokenBucket
from rawquery_workers.http.redact import Redactor
from rawquery_workers.http.response_limits import ResponseLimits
from rawquery_workers.settings import reset_settings
from rawquery_workers.spec.models import DEFAULT_RATE_LIMIT, RateLimit
from rawquery_workers.spec.origin import same_origin
from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.http_helpers import (
    SECRET,
    BearerTestAuth,
    FakeClock,
    QueryKeyTestAuth,
    make_api,
    sequence,
)

OK = Reply({"data": [{"id": 1}]})
HTML = Reply(
    "<!doctype html><html><body>Maintenance</body></html>", 200, {"Content-Type": "text/html"}
)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with build_client(read_timeout=5.0) as http:
        yield http


@pytest.fixture
def other_server() -> Iterator[ApiServer]:
    """A second server on the same host, different port: a different origin."""
    with ApiServer() as server:
        yield server


# --- policy and pure helpers ---------------------------------------------------------------


def test_backoff_kinds_and_caps() -> None:
    full = RetryPolicy(backoff="exponential", base=1.0, max_wait=10.0, random=lambda: 0.999999)
    assert [round(full.backoff_wait(n), 3) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    none = RetryPolicy(backoff="exponential", random=lambda: 0.0)
    assert none.backoff_wait(3) == 0.0  # full jitter reaches down to zero
    half = RetryPolicy(backoff="exponential", base=2.0, random=lambda: 0.5)
    assert [half.backoff_wait(n) for n in range(3)] == [1.0, 2.0, 4.0]
    linear = RetryPolicy(backoff="linear", base=1.5, max_wait=4.0)
    assert [linear.backoff_wait(n) for n in range(4)] == [1.5, 3.0, 4.0, 4.0]
    constant = RetryPolicy(backoff="constant", base=2.0)
    assert [constant.backoff_wait(n) for n in range(3)] == [2.0, 2.0, 2.0]
    assert RetryPolicy(random=lambda: 0.5).backoff_wait(1000) == 150.0  # no overflow


def test_retry_after_is_honoured_capped_or_ignored() -> None:
    policy = RetryPolicy(max_wait=60.0, random=lambda: 0.5)
    assert policy.wait(0, retry_after=7.0) == 7.0
    assert policy.wait(0, retry_after=1000.0) == 60.0
    ignoring = RetryPolicy(respect_retry_after=False, random=lambda: 0.5)
    assert ignoring.wait(0, retry_after=7.0) == 0.5


def test_policy_from_spec_and_defaults() -> None:
    policy = RetryPolicy.from_spec(DEFAULT_RATE_LIMIT)
    assert policy.retry_on == frozenset({429, 500, 502, 503, 504})
    assert (policy.max_retries, policy.attempts, policy.backoff) == (5, 6, "exponential")
    assert policy.respect_retry_after is True
    custom = RetryPolicy.from_spec(
        RateLimit(retry_on=[429], backoff="linear", max_retries=0, backoff_base=2, max_wait=9)
    )
    assert (custom.retry_on, custom.attempts, custom.base, custom.max_wait) == (
        frozenset({429}),
        1,
        2.0,
        9.0,
    )


def test_parse_retry_after_seconds_and_http_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for junk in (None, "", "soon", "nan", "Wed, 99 Foo 2024"):
        assert parse_retry_after(junk) is None


def test_status_maps_to_error_classes_in_one_place() -> None:
    retry_on = {429, 500, 502, 503}
    assert error_for_status(200, retry_on) is None
    assert error_for_status(204, retry_on) is None
    assert error_for_status(429, retry_on) is RetriableError
    assert error_for_status(504, retry_on) is RetriableError
    assert error_for_status(401, retry_on) is AuthError
    assert error_for_status(403, retry_on) is AuthError
    assert error_for_status(404, retry_on) is ResponseError
    assert error_for_status(422, retry_on) is ResponseError
    assert error_for_status(409, {409}) is RetriableError


def test_origins_and_url_joining() -> None:
    assert same_origin("https://API.example.com/v1", "https://api.example.com:443/x")
    assert not same_origin("https://api.example.com", "http://api.example.com")
    assert not same_origin("http://127.0.0.1:8000", "http://127.0.0.1:8001")
    assert not same_origin("https://api.example.com", "https://evil.example.com")
    assert join_url("https://h/v1/", "/users") == "https://h/v1/users"
    assert join_url("https://h/v1", "users") == "https://h/v1/users"
    assert join_url("https://h/v1", "") == "https://h/v1"


# --- redaction -----------------------------------------------------------------------------


def test_redactor_masks_secrets_anywhere_raw_or_encoded() -> None:
    redactor = Redactor(["p@ss w0rd!", "tok_ABCDEF"])
    text = "login p@ss w0rd! then p%40ss%20w0rd%21 and p%40ss+w0rd%21 with tok_ABCDEF."
    assert redactor.redact(text) == "login *** then *** and *** with ***."
    redactor.add_secrets("issued-later-123", None)
    assert redactor.redact("token issued-later-123") == "token ***"


def test_short_secrets_are_masked_as_whole_words_only() -> None:
    redactor = Redactor(["me"])
    assert redactor.redact("user me, some memory") == "user ***, some memory"


def test_redact_url_masks_userinfo_and_credential_params() -> None:
    redactor = Redactor(["abc123secret"], param_names=["X-Custom-Key"])
    url = (
        "https://bob:pw@api.example.com/v1/abc123secret/items?page=2&token=t&API_KEY=k"
        "&x-custom-key=v&client_secret=s&sig=x&cursor=c1&other=abc123secret#access_token=z"
    )
    assert redactor.redact_url(url) == (
        "https://***@api.example.com/v1/***/items?page=2&token=***&API_KEY=***"
        "&x-custom-key=***&client_secret=***&sig=***&cursor=c1&other=***#access_token=***"
    )


def test_redact_headers_masks_auth_headers_and_any_value_holding_a_secret() -> None:
    redactor = Redactor(["abc123secret"], header_names=["X-Shop-Token"])
    headers = {
        "Authorization": "Bearer x",
        "Cookie": "a=b",
        "Set-Cookie": "s=1",
        "X-API-Key": "k",
        "X-Shop-Token": "t",
        "X-Trace": "id abc123secret",
        "Accept": "application/json",
    }
    assert redactor.redact_headers(headers) == {
        "Authorization": "***",
        "Cookie": "***",
        "Set-Cookie": "***",
        "X-API-Key": "***",
        "X-Shop-Token": "***",
        "X-Trace": "***",
        "Accept": "application/json",
    }


def test_redactor_for_auth_knows_the_specs_credential_names() -> None:
    from rawquery_workers.spec.credentials import Credentials
    from rawquery_workers.spec.models import ApiKeyAuth

    auth = ApiKeyAuth(type="api_key", query_param="hapikey")
    redactor = Redactor.for_auth(auth, Credentials(token="the-token-1"))
    assert redactor.redact_url("https://h/x?hapikey=zzz&q=1") == "https://h/x?hapikey=***&q=1"
    assert redactor.redact("sent the-token-1") == "sent ***"


# --- requests against the server -----------------------------------------------------------


def test_success_returns_parsed_json_and_reports_an_event(
    api_server: ApiServer, client: httpx.Client
) -> None:
    api_server.route("/v1/items", lambda req: OK)
    api, rec = make_api(client, api_server.url + "/v1", auth=BearerTestAuth())
    response = api.request("GET", "/items", params={"page": 1, "active": True})
    assert response.status == 200 and response.json == {"data": [{"id": 1}]}
    assert response.attempts == 1
    assert response.url == f"{api_server.url}/v1/items?page=1&active=true"
    sent = api_server.requests_to("/v1/items")[0]
    assert sent.header("authorization") == f"Bearer {SECRET}"
    assert sent.params == {"page": "1", "active": "true"}
    assert "gzip" in (sent.header("accept-encoding") or "")
    [event] = rec.events
    assert event["event"] == "request" and event["status"] == 200 and event["method"] == "GET"
    assert event["url"] == response.redacted_url and event["rate_limit_wait"] == 0.0
    assert isinstance(event["seconds"], float)


def test_post_sends_a_json_body(api_server: ApiServer, client: httpx.Client) -> None:
    api_server.route("/graphql", lambda req: Reply({"echo": req.json()}), methods=("POST",))
    api, _ = make_api(client, api_server.url)
    response = api.request("POST", "/graphql", json={"query": "q", "variables": {"a": 1}})
    assert response.json == {"echo": {"query": "q", "variables": {"a": 1}}}
    assert api_server.requests[0].header("content-type") == "application/json"


def test_gzip_bodies_are_decoded(api_server: ApiServer, client: httpx.Client) -> None:
    api_server.route("/z", lambda req: Reply({"data": [1, 2]}, gzip=True))
    api, _ = make_api(client, api_server.url)
    assert api.request("GET", "/z").json == {"data": [1, 2]}


def test_5xx_then_success_retries_with_exponential_full_jitter(
    api_server: ApiServer, client: httpx.Client
) -> None:
    api_server.route("/x", sequence(Reply(status=500), Reply(status=502), Reply(status=503), OK))
    api, rec = make_api(client, api_server.url, random=0.5)
    response = api.request("GET", "/x")
    assert response.attempts == 4 and len(api_server.requests) == 4
    assert rec.sleeps == [0.5, 1.0, 2.0]  # 0.5 * min(300, 1 * 2**n)
    retries = [e for e in rec.events if e["event"] == "retry"]
    assert [e["status"] for e in retries] == [500, 502, 503]


def test_429_retry_after_seconds_is_honoured(api_server: ApiServer, client: httpx.Client) -> None:
    api_server.route("/x", sequence(Reply(status=429, headers={"Retry-After": "7"}), OK))
    api, rec = make_api(client, api_server.url)
    assert api.request("GET", "/x").attempts == 2
    assert rec.sleeps == [7.0]


def test_429_retry_after_http_date_is_honoured(api_server: ApiServer, client: httpx.Client) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    api_server.route("/x", sequence(Reply(status=429, headers={"Retry-After": when}), OK))
    api, rec = make_api(client, api_server.url)
    api.request("GET", "/x")
    assert len(rec.sleeps) == 1 and 25.0 < rec.sleeps[0] <= 30.0


def test_retry_after_is_capped_at_max_wait_or_ignored_when_asked(
    api_server: ApiServer, client: httpx.Client
) -> None:
    limited = Reply(status=503, headers={"Retry-After": "3600"})
    api_server.route("/x", sequence(limited, OK, limited, OK))
    api, rec = make_api(client, api_server.url, rate_limit=RateLimit(max_wait=45))
    api.request("GET", "/x")
    ignoring = RateLimit(respect_retry_after=False, backoff="constant", backoff_base=2)
    api2, rec2 = make_api(client, api_server.url, rate_limit=ignoring)
    api2.request("GET", "/x")
    assert rec.sleeps == [45.0] and rec2.sleeps == [2.0]


def test_connection_reset_is_retried(api_server: ApiServer, client: httpx.Client) -> None:
    api_server.route("/x", sequence(Reply(reset=True), Reply(reset=True), OK))
    api, rec = make_api(client, api_server.url)
    assert api.request("GET", "/x").attempts == 3
    failed = [e for e in rec.events if e["event"] == "request" and e["status"] is None]
    assert len(failed) == 2 and "network error" in str(failed[0]["reason"])


def test_connection_refused_fails_after_the_retries(client: httpx.Client) -> None:
    with ApiServer() as gone:
        url = gone.url
    api, rec = make_api(client, url, rate_limit=RateLimit(max_retries=2))
    with pytest.raises(RetriableError, match=r"failed after 3 attempts: network error \(Connect"):
        api.request("GET", "/x")
    assert len(rec.sleeps) == 2


def test_slow_response_past_the_read_timeout_is_retried(api_server: ApiServer) -> None:
    api_server.route("/x", sequence(Reply(delay=1.0), OK))
    with build_client(read_timeout=0.2) as fast:
        api, _ = make_api(fast, api_server.url)
        assert api.request("GET", "/x").attempts == 2


def test_always_slow_fails_with_a_timeout_message(api_server: ApiServer) -> None:
    api_server.route("/x", lambda req: Reply(OK.body, delay=0.6))
    with build_client(read_timeout=0.1) as fast:
        api, _ = make_api(fast, api_server.url, rate_limit=RateLimit(max_retries=1))
        with pytest.raises(RetriableError, match=r"after 2 attempts: timed out \(ReadTimeout"):
            api.request("GET", "/x")


def test_html_with_200_is_retried_then_succeeds(
    api_server: ApiServer, client: httpx.Client
) -> None:
    api_server.route("/x", sequence(HTML, OK))
    api, rec = make_api(client, api_server.url)
    assert api.request("GET", "/x").json == OK.body and rec.sleeps == [0.5]


def test_html_with_200_every_time_fails_clearly(
    api_server: ApiServer, client: httpx.Client
) -> None:
    api_server.route("/x", lambda req: HTML)
    api, _ = make_api(client, api_server.url, rate_limit=RateLimit(max_retries=3))
    with pytest.raises(RetriableError) as info:
        api.request("GET", "/x", params={"page": 2})
    message = str(info.value)
    assert f"GET {api_server.url}/x?page=2 failed after 4 attempts" in message
    assert "HTTP 200 with a body that is not valid JSON (text/html" in message
    assert "'<!doctype html><html><body>Maintenance" in message
    assert info.value.status == 200 and len(api_server.requests) == 4


@pytest.mark.parametrize(
    "bad",
    [
        Reply(b'{"data": [{"id": 1}, {"id"', headers={"Content-Type": "application/json"}),
        Reply(b'{"data": [{"id": 1}]}', truncate=9),
        Reply(b""),
    ],
    ids=["invalid-json", "cut-connection", "empty"],
)
def test_truncated_or_empty_bodies_are_retried(
    api_server: ApiServer, client: httpx.Client, bad: Reply
) -> None:
    api_server.route("/x", sequence(bad, OK))
    api, rec = make_api(client, api_server.url)
    assert api.request("GET", "/x").json == OK.body and len(rec.sleeps) == 1


def test_expect_json_false_accepts_any_body(api_server: ApiServer, client: httpx.Client) -> None:
    api_server.route("/x", lambda req: HTML)
    api, _ = make_api(client, api_server.url)
    response = api.request("GET", "/x", expect_json=False)
    assert response.json is None and response.content.startswith(b"<!doctype")


@pytest.mark.parametrize(("max_retries", "requests"), [(0, 1), (1, 2), (4, 5)])
def test_max_retries_counts_retries_after_the_first_attempt(
    api_server: ApiServer, client: httpx.Client, max_retries: int, requests: int
) -> None:
    api_server.route("/x", lambda req: Reply(status=503))
    api, rec = make_api(client, api_server.url, rate_limit=RateLimit(max_retries=max_retries))
    noun = "attempt" if requests == 1 else "attempts"
    with pytest.raises(RetriableError, match=f"after {requests} {noun}: HTTP 503"):
        api.request("GET", "/x")
    assert len(api_server.requests) == requests and len(rec.sleeps) == requests - 1


def test_final_error_names_status_attempts_and_redacted_url_never_the_secret(
    api_server: ApiServer, client: httpx.Client
) -> None:
    api_server.route("/v1/items", lambda req: Reply({"error": f"bad {SECRET}"}, 502))
    api, _ = make_api(
        client, api_server.url + "/v1", auth=QueryKeyTestAuth(), rate_limit=RateLimit(max_retries=2)
    )
    with pytest.raises(RetriableError) as info:
        api.request("GET", f"/items?api_key={SECRET}&page=3")
    message = str(info.value)
    assert "HTTP 502" in message and "after 3 attempts" in message
    assert f"{api_server.url}/v1/items?api_key=***&page=3" in message
    assert SECRET not in message
    assert api_server.requests[0].params["api_key"] == SECRET  # it was really sent


def test_401_is_an_auth_error_with_a_hint(api_server: ApiServer, client: httpx.Client) -> None:
    api_server.route("/x", lambda req: Reply({"message": "Bad credentials"}, 401))
    api, rec = make_api(client, api_server.url, auth=BearerTestAuth())
    with pytest.raises(AuthError) as info:
        api.request("GET", "/x")
    assert "HTTP 401 Unauthorized" in str(info.value)
    assert "refused the credentials" in str(info.value) and "Bad credentials" in str(info.value)
    assert rec.sleeps == [] and len(api_server.requests) == 1


def test_403_is_an_auth_error(api_server: ApiServer, client: httpx.Client) -> None:
    api_server.route("/x", lambda req: Reply({"message": "forbidden"}, 403))
    api, _ = make_api(client, api_server.url)
    with pytest.raises(AuthError, match="HTTP 403"):
        api.request("GET", "/x")


def test_other_4xx_is_a_response_error_with_a_redacted_excerpt(
    api_server: ApiServer, client: httpx.Client
) -> None:
    body = {"error": "unknown field 'colour'", "echo": SECRET, "pad": "x" * 500}
    api_server.route("/x", lambda req: Reply(body, 422))
    api, _ = make_api(client, api_server.url)
    with pytest.raises(ResponseError) as info:
        api.request("GET", "/x")
    message = str(info.value)
    assert "HTTP 422" in message and "unknown field 'colour'" in message
    assert SECRET not in message and "***" in message and "…" in message
    assert len(message) < 600


def test_a_5xx_not_in_retry_on_fails_at_once(api_server: ApiServer, client: httpx.Client) -> None:
    api_server.route("/x", lambda req: Reply(status=500))
    api, _ = make_api(client, api_server.url, rate_limit=RateLimit(retry_on=[429]))
    with pytest.raises(RetriableError, match="not retried: 500 is not in rate_limit.retry_on"):
        api.request("GET", "/x")
    assert len(api_server.requests) == 1


def test_every_attempt_takes_a_rate_limit_token(
    api_server: ApiServer, client: httpx.Client
) -> None:
    clock = FakeClock()
    limiter = TokenBucket(1, 1, clock=clock, sleep=clock.sleep)
    api_server.route("/x", sequence(Reply(status=503), OK))
    api, rec = make_api(client, api_server.url, limiter=limiter)
    api.request("GET", "/x")
    api.request("GET", "/x")
    waits = [e["rate_limit_wait"] for e in rec.events if e["event"] == "request"]
    assert waits == [0.0, 1.0, 1.0]  # 1 per second: the retry waits for its token too
    assert clock.sleeps == [1.0, 1.0]


# --- credentials only go to base_url's origin ----------------------------------------------


def test_other_origin_gets_no_credentials(
    api_server: ApiServer, other_server: ApiServer, client: httpx.Client
) -> None:
    for server in (api_server, other_server):
        server.route("/items", lambda req: OK)
    api, _ = make_api(client, api_server.url, auth=BearerTestAuth())
    api.request("GET", "/items")
    api.request("GET", f"{other_server.url}/items?page=2&api_key={SECRET}&token=t")
    own = api_server.requests_to("/items")[0]
    foreign = other_server.requests_to("/items")[0]
    assert own.header("authorization") == f"Bearer {SECRET}"
    assert foreign.header("authorization") is None
    assert foreign.params == {"page": "2", "token": "t"}  # api_key is ours; token is theirs


def test_query_key_auth_is_not_added_on_another_origin(
    api_server: ApiServer, other_server: ApiServer, client: httpx.Client
) -> None:
    for server in (api_server, other_server):
        server.route("/items", lambda req: OK)
    api, _ = make_api(client, api_server.url, auth=QueryKeyTestAuth())
    api.request("GET", "/items")
    api.request("GET", f"{other_server.url}/items")
    assert api_server.requests[0].params == {"api_key": SECRET}
    assert other_server.requests[0].params == {}


def test_redirects_are_followed_and_lose_credentials_off_origin(
    api_server: ApiServer, other_server: ApiServer, client: httpx.Client
) -> None:
    api_server.route("/old", lambda req: Reply(status=301, headers={"Location": "/new"}))
    api_server.route(
        "/new", lambda req: Reply(status=302, headers={"Location": f"{other_server.url}/elsewhere"})
    )
    other_server.route("/elsewhere", lambda req: OK)
    api, _ = make_api(client, api_server.url, auth=BearerTestAuth())
    response = api.request("GET", "/old")
    assert response.json == OK.body and response.url == f"{other_server.url}/elsewhere"
    assert api_server.requests_to("/new")[0].header("authorization") == f"Bearer {SECRET}"
    assert other_server.requests[0].header("authorization") is None


def test_401_from_another_origin_explains_why(
    api_server: ApiServer, other_server: ApiServer, client: httpx.Client
) -> None:
    other_server.route("/x", lambda req: Reply({"message": "who are you"}, 401))
    api, _ = make_api(client, api_server.url, auth=BearerTestAuth())
    with pytest.raises(AuthError, match="no credentials were sent.*not on base_url's origin"):
        api.request("GET", f"{other_server.url}/x")


def test_an_unsupported_url_is_a_source_error(client: httpx.Client) -> None:
    api, _ = make_api(client, "https://api.example.com")
    with pytest.raises(SourceError, match="UnsupportedProtocol"):
        api.request("GET", "ftp://api.example.com/x")


def test_cookies_set_at_login_are_kept_and_go_to_base_urls_origin_only(
    api_server: ApiServer, other_server: ApiServer, client: httpx.Client
) -> None:
    from rawquery_workers.auth import build_auth
    from rawquery_workers.spec.credentials import Credentials
    from rawquery_workers.spec.models import CustomAuth

    def login(request: RecordedRequest) -> Reply:
        return Reply({"token": "t-1"}, headers={"Set-Cookie": "sid=abc; Path=/"})

    api_server.route("/login", login, methods=("POST",))
    api_server.route("/items", lambda req: OK)
    other_server.route("/items", lambda req: OK)
    spec = CustomAuth.model_validate(
        {
            "type": "custom",
            "pre_request": {"url": f"{api_server.url}/login", "extract": {"t": "response.token"}},
            "headers": {"X-Session": "{{t}}"},
        }
    )
    auth = build_auth(spec, Credentials(), base_url=api_server.url)
    api, _ = make_api(client, api_server.url, auth=auth)
    for _ in range(2):
        assert api.request("GET", "/items").json == OK.body
    api.request("GET", f"{other_server.url}/items")  # same host, another port: no cookie
    first, second = api_server.requests_to("/items")
    assert first.header("cookie") is None  # built before the login, as with httpx's send
    assert second.header("cookie") == "sid=abc" and second.header("x-session") == "t-1"
    assert len(api_server.requests_to("/login")) == 1
    assert other_server.requests[0].header("cookie") is None


def test_environment_proxies_are_honoured_and_no_proxy_bypasses_them(
    api_server: ApiServer, other_server: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY / NO_PROXY as curl, requests and httpx read them: the proxy gets the
    request for the API's URL (a plain-HTTP proxy is sent the full URL)."""
    api_server.route("/data", lambda r: Reply({"via": "direct"}))
    other_server.route("/data", lambda r: Reply({"via": "proxy"}))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        for variant in (name, name.lower()):
            monkeypatch.delenv(variant, raising=False)
    monkeypatch.setenv("HTTP_PROXY", other_server.url)
    with build_client(read_timeout=5.0) as proxied:
        assert proxied.get(f"{api_server.url}/data").json() == {"via": "proxy"}
        api, _ = make_api(proxied, api_server.url, auth=BearerTestAuth())
        assert api.request("GET", "/data").json == {"via": "proxy"}
    seen = other_server.requests_to("/data")
    assert [r.header("host") for r in seen] == [f"127.0.0.1:{api_server.port}"] * 2
    assert seen[1].header("authorization") == f"Bearer {SECRET}"  # the API's own origin
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with build_client(read_timeout=5.0) as direct:
        assert direct.get(f"{api_server.url}/data").json() == {"via": "direct"}
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("NO_PROXY")
    with build_client(read_timeout=5.0) as plain:
        assert plain.get(f"{api_server.url}/data").json() == {"via": "direct"}


# --- bounds: deadline, body size, nesting, the caller's time ---------------------------------


def test_a_response_past_the_request_deadline_is_retried_like_a_timeout(
    api_server: ApiServer,
) -> None:
    api_server.route("/x", lambda req: Reply(OK.body, delay=1.0))  # the read timeout is 5 s
    limits = ResponseLimits(deadline=0.3)
    with build_client(read_timeout=5.0, limits=limits) as bounded:
        api, _ = make_api(bounded, api_server.url, rate_limit=RateLimit(max_retries=1))
        started = time.monotonic()
        with pytest.raises(RetriableError) as info:
            api.request("GET", "/x")
    assert time.monotonic() - started < 2.5
    assert "after 2 attempts: timed out (DeadlineExceeded" in str(info.value)
    assert "request deadline of 0.3 s (RAWQUERY_REQUEST_DEADLINE_SECONDS)" in str(info.value)
    assert len(api_server.requests_to("/x")) == 2


def test_a_body_over_the_size_cap_is_a_response_error_sent_once(api_server: ApiServer) -> None:
    api_server.route("/plain", lambda req: Reply({"data": ["x" * 2000]}))
    api_server.route("/packed", lambda req: Reply({"data": ["x" * 2000]}, gzip=True))
    with build_client(read_timeout=5.0, limits=ResponseLimits(max_bytes=1000)) as bounded:
        api, _ = make_api(bounded, api_server.url)
        for path, said in [("/plain", "Content-Length"), ("/packed", "decompresses (gzip)")]:
            with pytest.raises(ResponseError) as info:
                api.request("GET", path)
            message = str(info.value)
            assert said in message and "RAWQUERY_MAX_RESPONSE_BYTES=1000" in message, message
            assert "not retried" in message
            assert len(api_server.requests_to(path)) == 1


def test_nesting_deeper_than_orjson_reads_is_a_response_error_sent_once(
    api_server: ApiServer, client: httpx.Client
) -> None:
    api_server.route("/deep", lambda req: Reply(b"[" * 2000 + b"]" * 2000))
    api_server.route("/edge", lambda req: Reply(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH))
    api, _ = make_api(client, api_server.url)
    with pytest.raises(ResponseError, match="nesting deeper than 1024 levels"):
        api.request("GET", "/deep")
    assert len(api_server.requests_to("/deep")) == 1
    assert api.request("GET", "/edge").attempts == 1  # the deepest still read


def test_finish_by_ends_a_request_in_flight_or_a_retry_wait(api_server: ApiServer) -> None:
    api_server.route("/slow", lambda req: Reply(OK.body, delay=1.0))
    api_server.route("/busy", lambda req: Reply({"error": "busy"}, status=503))
    with build_client(read_timeout=5.0) as http:
        api, recorder = make_api(http, api_server.url, rate_limit=RateLimit(backoff_base=30))
        api.finish_by = time.monotonic() + 0.3
        started = time.monotonic()
        with pytest.raises(OutOfTime):
            api.request("GET", "/slow")  # cut at finish_by, not retried
        assert time.monotonic() - started < 0.9
        assert len(api_server.requests_to("/slow")) == 1
        api.finish_by = time.monotonic() + 5
        with pytest.raises(OutOfTime):
            api.request("GET", "/busy")  # a 503: the wait (about 15 s) would pass finish_by
        assert len(api_server.requests_to("/busy")) == 1 and recorder.sleeps == []
        api.finish_by = time.monotonic() - 1
        with pytest.raises(OutOfTime):
            api.request("GET", "/slow")  # already over: nothing is sent
        assert len(api_server.requests_to("/slow")) == 1
        api.finish_by = None
        assert api.request("GET", "/slow").attempts == 1


def test_build_client_reads_the_limits_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("RAWQUERY_REQUEST_DEADLINE_SECONDS", "RAWQUERY_MAX_RESPONSE_BYTES"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    try:
        assert response_limits() == ResponseLimits(deadline=300.0, max_bytes=256 * 1024 * 1024)
        monkeypatch.setenv("RAWQUERY_REQUEST_DEADLINE_SECONDS", "12.5")
        monkeypatch.setenv("RAWQUERY_MAX_RESPONSE_BYTES", "4096")
        reset_settings()
        assert response_limits() == ResponseLimits(deadline=12.5, max_bytes=4096)
    finally:
        reset_settings()
