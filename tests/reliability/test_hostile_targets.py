"""URLs an API hands back that point somewhere it should not send us: the credentials rule
on a cross-origin redirect (strip ours, keep the target's own query parameters) and the
private-target rule (rawquery_workers/http/targets.py: no hop to private, loopback or
link-local addresses from a base_url that is not of that kind).

These tests never open a connection outside 127.0.0.0/8: `loopback_only` replaces
`socket.create_connection` with one that records any other destination and refuses it, so
a rule that failed to hold shows up as a recorded attempt, not as a packet sent. The
decision itself is unit-tested with literal addresses and a resolver mapping test names.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rawquery_workers.errors import ResponseError, RetriableError
from rawquery_workers.http.client import build_client
from rawquery_workers.http.redact import Redactor
from rawquery_workers.http.targets import TargetGuard, address_kind, may_follow
from rawquery_workers.paginate.extract import read_pages
from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.spec.models import RateLimit, Spec
from tests.e2e.conftest import cli, write_spec  # noqa: F401
from tests.e2e.helpers import Cli, status_streams
from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.http_helpers import SECRET, BearerTestAuth, QueryKeyTestAuth, make_api

METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
OPT_OUT = "RAWQUERY_ALLOW_PRIVATE_TARGETS=1"
SIGNED = {"X-Amz-Signature": "abc", "X-Amz-Expires": "60"}
NO_RETRY = RateLimit(max_retries=0)


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Hosts the code tried to connect to outside 127.0.0.0/8 (refused, never reached)."""
    attempted: list[str] = []
    real = socket.create_connection

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            attempted.append(host)
            raise ConnectionRefusedError(f"test fence: no connection to {host}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempted


@pytest.fixture
def client(loopback_only: list[str]) -> Iterator[httpx.Client]:
    with build_client(read_timeout=5.0) as http:
        yield http


@pytest.fixture
def storage() -> Iterator[ApiServer]:
    """Another origin on another loopback address: a storage server for pre-signed URLs."""
    with ApiServer(host="127.0.0.2") as server:
        yield server


def _signed_only(request: RecordedRequest) -> Reply:
    """A storage server: 403 unless the pre-signed URL's own parameters came through."""
    if request.params != SIGNED:
        return Reply({"error": "SignatureDoesNotMatch", "got": request.params}, 403)
    return Reply([{"id": 1}, {"id": 2}])


# --- item 5: a cross-origin redirect keeps the target's own parameters ----------------------


@pytest.mark.parametrize("auth", [BearerTestAuth(), QueryKeyTestAuth()], ids=["bearer", "query"])
def test_a_redirect_to_a_presigned_url_keeps_its_signature_and_drops_our_credentials(
    api_server: ApiServer, storage: ApiServer, client: httpx.Client, auth: httpx.Auth
) -> None:
    # The API echoes our api_key into the Location, as some do: that one is ours to strip.
    location = (
        f"{storage.url}/bucket/export.json?X-Amz-Signature=abc&api_key={SECRET}&X-Amz-Expires=60"
    )
    api_server.route("/export", lambda req: Reply(status=302, headers={"Location": location}))
    storage.route("/bucket/export.json", _signed_only)
    api, _ = make_api(client, api_server.url, auth=auth)
    response = api.request("GET", "/export")
    assert response.json == [{"id": 1}, {"id": 2}]
    (fetched,) = storage.requests
    assert fetched.params == SIGNED
    assert fetched.header("authorization") is None
    assert SECRET not in str(fetched.query) + str(fetched.headers)


def test_stripping_keeps_every_parameter_that_is_not_ours() -> None:
    redactor = Redactor([SECRET], param_names=["api_key"])
    url = (
        f"https://bucket.s3.amazonaws.com/f?X-Amz-Credential=AKIA%2F20240101&token=theirs"
        f"&api_key=whatever&sig=x&q=my%20{SECRET}"
    )
    assert redactor.strip_params(url) == (
        "https://bucket.s3.amazonaws.com/f?X-Amz-Credential=AKIA%2F20240101&token=theirs&sig=x"
    )


# --- item 6: the decision, with literal addresses -------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", "public"),
        ("2606:4700:4700::1111", "public"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
    ],
)
def test_address_kinds(address: str, kind: str) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_the_rule_table() -> None:
    assert may_follow("public", "public")
    assert not may_follow("public", "private")
    assert not may_follow("public", "loopback")
    assert may_follow("private", "private") and not may_follow("private", "loopback")
    assert may_follow("loopback", "loopback") and may_follow("loopback", "private")
    for base in ("public", "private", "loopback", "link-local"):
        assert not may_follow(base, "link-local"), base
        assert may_follow(base, "public"), base


HOSTS = {
    "api.example.com": ["93.184.215.14"],
    "cdn.example.com": ["2606:4700::6810:84e5", "104.16.132.229"],
    "rebind.example.com": ["104.16.132.229", "10.0.0.7"],  # one private answer is enough
    "intranet.example.com": ["10.0.0.7"],
    "metadata.example.com": ["169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
}


def _guard(base_url: str, **kwargs: Any) -> tuple[TargetGuard, list[str]]:
    asked: list[str] = []

    def resolver(host: str) -> list[str]:
        asked.append(host)
        return HOSTS.get(host, [])

    return TargetGuard(base_url, resolver=resolver, **kwargs), asked


@pytest.mark.parametrize(
    ("target", "refused"),
    [
        ("https://cdn.example.com/page2", None),
        ("https://8.8.8.8/x", None),
        ("https://intranet.example.com/x", "intranet.example.com (10.0.0.7) is a private"),
        ("https://rebind.example.com/x", "rebind.example.com (10.0.0.7) is a private"),
        ("http://10.0.0.1/x", "10.0.0.1 is a private address"),
        ("http://127.0.0.1:6379/", "127.0.0.1 is a loopback address"),
        ("http://localhost/", "localhost (127.0.0.1) is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://0.0.0.0:8000/", "0.0.0.0 is a loopback address"),
        (METADATA, "169.254.169.254 is a link-local address"),
        ("http://metadata.example.com/", "metadata.example.com (169.254.169.254) is a link"),
        ("http://[::ffff:a9fe:a9fe]/", "is a link-local address"),
        ("https://unresolvable.example.com/x", None),  # fails to connect, or a proxy resolves
    ],
)
def test_from_a_public_base_url_only_public_targets_are_followed(
    target: str, refused: str | None
) -> None:
    guard, _ = _guard("https://api.example.com/v2")
    reason = guard.refusal(httpx.URL(target))
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason, reason


@pytest.mark.parametrize(
    ("base_url", "target", "allowed"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.2:9000/x", True),
        ("http://localhost:8000", "http://127.0.0.2:9000/x", True),
        ("http://127.0.0.1:8000", "http://10.0.0.1/x", True),
        ("http://127.0.0.1:8000", "https://cdn.example.com/x", True),
        ("http://127.0.0.1:8000", METADATA, False),
        ("http://10.0.0.5", "http://10.0.0.6/x", True),
        ("http://intranet.example.com", "http://192.168.0.9/x", True),
        ("http://10.0.0.5", "http://127.0.0.1:6379/", False),
        ("http://10.0.0.5", METADATA, False),
        ("https://unresolvable.example.com", "http://10.0.0.6/x", False),  # as if public
    ],
)
def test_a_private_or_loopback_base_url_follows_its_own_kind_never_link_local(
    base_url: str, target: str, allowed: bool
) -> None:
    guard, _ = _guard(base_url)
    assert (guard.refusal(httpx.URL(target)) is None) is allowed


def test_base_urls_own_host_is_never_resolved_and_the_opt_out_allows_all() -> None:
    guard, asked = _guard("https://api.example.com/v2")
    assert guard.refusal(httpx.URL("https://API.example.com:8443/other")) is None
    assert asked == []
    opted_out, asked = _guard("https://api.example.com", allow_private=True)
    for target in (METADATA, "http://127.0.0.1/", "http://intranet.example.com/"):
        assert opted_out.refusal(httpx.URL(target)) is None
    assert asked == []


def test_answers_are_cached_for_a_minute() -> None:
    now = [0.0]
    guard, asked = _guard("https://api.example.com", clock=lambda: now[0])
    for _ in range(3):
        assert guard.refusal(httpx.URL("https://cdn.example.com/p")) is None
    now[0] = 61.0
    assert guard.refusal(httpx.URL("https://cdn.example.com/p")) is None
    assert asked == ["api.example.com", "cdn.example.com", "cdn.example.com"]


def test_the_opt_out_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAWQUERY_ALLOW_PRIVATE_TARGETS", raising=False)
    reset_settings()
    assert get_settings().allow_private_targets is False
    monkeypatch.setenv("RAWQUERY_ALLOW_PRIVATE_TARGETS", "1")
    reset_settings()
    assert get_settings().allow_private_targets is True
    reset_settings()


# --- item 6, live: base_url on 127.0.0.1, next link to the metadata service ----------------


def _link_spec_json(base_url: str) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": base_url,
        "auth": {"type": "bearer"},
        "streams": [{"name": "items", "endpoint": "/items", "pagination": {"type": "link_header"}}],
    }


def _link_spec(base_url: str) -> Spec:
    return Spec.model_validate(_link_spec_json(base_url), context={"api_type": "rest"})


def _links_to(target: str) -> Callable[[RecordedRequest], Reply]:
    return lambda req: Reply([{"id": 1}], headers={"Link": f'<{target}>; rel="next"'})


def test_a_link_header_to_a_link_local_address_is_refused_without_connecting(
    api_server: ApiServer, client: httpx.Client, loopback_only: list[str]
) -> None:
    api_server.route("/items", _links_to(f"{METADATA}?page=2&api_key={SECRET}"))
    api, recorder = make_api(client, api_server.url, auth=BearerTestAuth())
    spec = _link_spec(api_server.url)
    pages = read_pages(spec, spec.streams[0], api)
    assert next(pages).records == [{"id": 1}]
    with pytest.raises(ResponseError) as refused:
        next(pages)
    message = str(refused.value)
    assert f"GET {METADATA}?page=2" in message and OPT_OUT in message
    assert "169.254.169.254 is a link-local address" in message
    assert SECRET not in message
    assert loopback_only == [] and recorder.sleeps == []
    assert [e["url"] for e in recorder.events if e["event"] == "request"] == [
        f"{api_server.url}/items"
    ]


def test_a_redirect_to_a_link_local_address_is_refused_without_connecting(
    api_server: ApiServer, client: httpx.Client, loopback_only: list[str]
) -> None:
    api_server.route("/items", lambda req: Reply(status=307, headers={"Location": METADATA}))
    api, recorder = make_api(client, api_server.url, auth=BearerTestAuth())
    with pytest.raises(ResponseError, match=f"redirected to {METADATA}: not sent") as refused:
        api.request("GET", "/items")
    assert OPT_OUT in str(refused.value)
    assert loopback_only == [] and recorder.sleeps == []
    assert len(api_server.requests) == 1


def test_opted_out_the_request_is_sent(
    api_server: ApiServer, client: httpx.Client, loopback_only: list[str]
) -> None:
    api_server.route("/items", lambda req: Reply(status=302, headers={"Location": METADATA}))
    api, _ = make_api(
        client, api_server.url, auth=BearerTestAuth(), rate_limit=NO_RETRY,
        allow_private_targets=True,
    )  # fmt: skip
    with pytest.raises(RetriableError, match="network error"):
        api.request("GET", "/items")
    assert loopback_only == ["169.254.169.254"]  # sent (and stopped by the test fence)


# --- item 6 through `rq connections sync`: the message a user sees, and the opt-out --------


def test_sync_refuses_the_metadata_service_and_says_how_to_opt_out(
    cli: Cli,  # noqa: F811
    write_spec: Callable[..., Path],  # noqa: F811
    api_server: ApiServer,
    loopback_only: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def items(request: RecordedRequest) -> Reply:
        if request.header("authorization") != "Bearer tok-1":
            return Reply({"error": "unauthorized"}, 401)
        return _links_to(METADATA)(request)

    api_server.route("/items", items)
    spec = {**_link_spec_json(api_server.url), "rate_limit": {"max_retries": 0}}
    path = write_spec(spec)
    assert cli("connect", "meta", "--spec", str(path), "--auth-token", "tok-1").code == 0
    refused = cli("connections", "sync", "meta")
    assert refused.code == 1
    error = status_streams(cli, "meta")["items"]["error"]
    assert METADATA in error and OPT_OUT in error, error
    assert loopback_only == []
    monkeypatch.setenv("RAWQUERY_ALLOW_PRIVATE_TARGETS", "1")
    assert cli("connections", "sync", "meta").code == 1  # sent: the fence refuses it
    assert loopback_only == ["169.254.169.254"]
    assert "network error" in status_streams(cli, "meta")["items"]["error"]
