"""Credentials stay with their host: `rq connections update` with a spec that sends them to
another origin needs them again or `--keep-credentials`; an exported RAWQUERY_AUTH_TOKEN
does not replace stored credentials on update; plain http to a remote host is warned of.

Two real local APIs: the connection's own on 127.0.0.1 and another origin on 127.0.0.2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rawquery_workers.registry import open_registry
from rawquery_workers.settings import reset_settings
from tests.e2e.helpers import Cli
from tests.support.api_server import ApiServer, Reply

TOKEN = "stored-token-4f1d"
NEW_TOKEN = "new-token-8b2c"
SECRET = "client-secret-77aa"
REFRESH = "refresh-token-19c3"
PASSWORD = "password-5e6f"
WriteSpec = Callable[..., Path]


@pytest.fixture
def elsewhere() -> Iterator[ApiServer]:
    """Another origin, still on this machine."""
    with ApiServer(host="127.0.0.2") as server:
        yield server


def _serve(server: ApiServer) -> None:
    server.route("/items", lambda _: Reply({"data": [{"id": 1}]}))
    server.route(
        "/token", lambda _: Reply({"access_token": "access-1", "expires_in": 3600}), ("POST",)
    )
    server.route("/login", lambda _: Reply({"session": "session-1"}), ("POST",))


def _spec(base_url: str, auth: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": base_url,
        "auth": auth or {"type": "bearer"},
        "streams": [{"name": "items", "endpoint": "/items", "data_path": "data"}],
    }


def _stored(name: str) -> tuple[dict[str, Any], Any]:
    reset_settings()
    registry = open_registry()
    return registry.get_connection(name).spec, registry.get_credentials(name)


def _secrets_seen(server: ApiServer) -> list[str]:
    text = " ".join(repr(r) for r in server.requests)
    return [s for s in (TOKEN, NEW_TOKEN, SECRET, REFRESH, PASSWORD) if s in text]


def test_moving_base_url_needs_the_credentials_again(
    cli: Cli, write_spec: WriteSpec, api_server: ApiServer, elsewhere: ApiServer
) -> None:
    _serve(api_server)
    _serve(elsewhere)
    home = write_spec(_spec(api_server.url), "home.json")
    assert cli("connect", "api", "--spec", str(home), "--auth-token", TOKEN).code == 0
    moved = write_spec(_spec(elsewhere.url), "moved.json")

    refused = cli("connections", "update", "api", "--spec", str(moved), "--schedule", "daily")
    assert refused.code == 2, refused
    assert elsewhere.url in refused.err and "--keep-credentials" in refused.err, refused.err
    assert "--auth-token" in refused.err and TOKEN not in refused.err + refused.out
    spec, creds = _stored("api")
    assert spec["base_url"] == api_server.url and creds.token == TOKEN  # nothing changed
    listed = cli("connections", "list", "--json").json()
    assert listed[0]["schedule"] is None
    assert cli("connections", "sync", "api").code == 0  # still the first API's
    assert api_server.requests_to("/items")[-1].header("authorization") == f"Bearer {TOKEN}"
    assert elsewhere.requests == []

    again = cli("connections", "update", "api", "--spec", str(moved), "--auth-token", NEW_TOKEN)
    assert again.code == 0, again
    assert cli("connections", "sync", "api").code == 0
    assert [r.header("authorization") for r in elsewhere.requests] == [f"Bearer {NEW_TOKEN}"]
    assert _secrets_seen(elsewhere) == [NEW_TOKEN]


def test_keep_credentials_moves_them_and_says_where(
    cli: Cli, write_spec: WriteSpec, api_server: ApiServer, elsewhere: ApiServer
) -> None:
    _serve(elsewhere)
    home = write_spec(_spec(api_server.url), "home.json")
    assert cli("connect", "api", "--spec", str(home), "--auth-token", TOKEN).code == 0
    moved = write_spec(_spec(elsewhere.url), "moved.json")

    kept = cli("connections", "update", "api", "--spec", str(moved), "--keep-credentials")
    assert kept.code == 0, kept
    assert f"credentials move from {api_server.url} to {elsewhere.url} (base_url)" in kept.out
    assert TOKEN not in kept.out + kept.err
    assert _stored("api")[1].token == TOKEN
    assert cli("connections", "sync", "api").code == 0
    assert [r.header("authorization") for r in elsewhere.requests] == [f"Bearer {TOKEN}"]


def _oauth(base: str, token_host: str) -> dict[str, Any]:
    return _spec(base, {"type": "oauth2", "token_url": f"{token_host}/token"})


def _custom(base: str, login_host: str) -> dict[str, Any]:
    login = {
        "url": f"{login_host}/login",
        "body": {"password": "{{auth.password}}"},
        "extract": {"session": "response.session"},
    }
    return _spec(base, {"type": "custom", "pre_request": login, "headers": {"X-S": "{{session}}"}})


OAUTH_FLAGS = ["--client-id", "cid", "--client-secret", SECRET, "--refresh-token", REFRESH]


@pytest.mark.parametrize(
    ("make", "flags", "field"),
    [
        (_oauth, OAUTH_FLAGS, "auth.token_url"),
        (_custom, ["--auth-pass", PASSWORD], "auth.pre_request.url"),
    ],
    ids=["oauth2-token_url", "custom-pre_request.url"],
)
def test_moving_where_auth_logs_in_needs_the_credentials_again(
    cli: Cli,
    write_spec: WriteSpec,
    api_server: ApiServer,
    elsewhere: ApiServer,
    make: Callable[[str, str], dict[str, Any]],
    flags: list[str],
    field: str,
) -> None:
    _serve(api_server)
    _serve(elsewhere)
    home = write_spec(make(api_server.url, api_server.url), "home.json")
    assert cli("connect", "api", "--spec", str(home), *flags).code == 0, flags
    moved = write_spec(make(api_server.url, elsewhere.url), "moved.json")

    refused = cli("connections", "update", "api", "--spec", str(moved))
    assert refused.code == 2, refused
    assert field in refused.err and elsewhere.url in refused.err, refused.err
    assert cli("connections", "sync", "api").code == 0
    assert elsewhere.requests == []

    kept = cli("connections", "update", "api", "--spec", str(moved), "--keep-credentials")
    assert kept.code == 0, kept
    assert f"credentials move from {api_server.url} to {elsewhere.url} ({field})" in kept.out


def test_an_exported_token_does_not_replace_stored_credentials_on_update(
    cli: Cli, write_spec: WriteSpec, api_server: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(api_server)
    path = write_spec(_spec(api_server.url))
    assert cli("connect", "api", "--spec", str(path), "--auth-token", TOKEN).code == 0
    monkeypatch.setenv("RAWQUERY_AUTH_TOKEN", NEW_TOKEN)

    result = cli("connections", "update", "api", "--schedule", "daily")
    assert result.code == 0, result
    assert "updated 'api': schedule" in result.out
    assert "RAWQUERY_AUTH_TOKEN" in result.err and "ignored" in result.err, result.err
    assert NEW_TOKEN not in result.out + result.err
    assert _stored("api")[1].token == TOKEN
    assert cli("connections", "sync", "api").code == 0
    assert api_server.requests_to("/items")[-1].header("authorization") == f"Bearer {TOKEN}"

    # A flag on the command line still replaces them (the variable set or not).
    flag = cli("connections", "update", "api", "--auth-token", "typed-token")
    assert flag.code == 0 and "credentials" in flag.out, flag
    assert _stored("api")[1].token == "typed-token"


def test_plain_http_to_a_remote_host_is_warned_of(cli: Cli, write_spec: WriteSpec) -> None:
    remote = write_spec(_spec("http://api.example.com/v1"), "remote.json")
    result = cli("connect", "remote", "--spec", str(remote), "--auth-token", TOKEN)
    assert result.code == 0, result
    assert "plain http to http://api.example.com (base_url)" in result.err, result.err
    update = cli("connections", "update", "remote", "--schedule", "daily")
    assert update.code == 0 and "plain http" in update.err, update

    local = write_spec(_spec("http://127.0.0.1:9/v1"), "local.json")
    quiet = cli("connect", "local", "--spec", str(local), "--auth-token", TOKEN)
    assert quiet.code == 0 and "plain http" not in quiet.err, quiet
    secure = write_spec(_spec("https://api.example.com"), "secure.json")
    quiet = cli("connect", "secure", "--spec", str(secure), "--auth-token", TOKEN)
    assert quiet.code == 0 and "plain http" not in quiet.err, quiet
