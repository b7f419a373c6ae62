"""Item 7: canary credentials never show up anywhere but encrypted in the registry.

Five connections (bearer, basic, OAuth2 with a rotating refresh token, api_key in the
query string, and a custom session login whose API echoes the session token into its
next-page link and into an error message) run `connect`, successful and failing syncs
(whose errors carry URLs and statuses), `status`, `list`, `query` and `spec validate` as
subprocesses with RAWQUERY_LOG_LEVEL=DEBUG. Their output, the warehouse (data and metadata
files, `rq.resume` included), the catalog/registry database and the sync logs are searched
for every canary.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.reliability.support import Result, rq_env, rq_run, write_json
from tests.reliability.tally import TALLY
from tests.support.api_server import ApiServer, RecordedRequest, Reply

pytestmark = pytest.mark.reliability

TOKEN = "CANARYtoken9f1c2b"
PASSWORD = "CANARYpass7d3e1a"
CLIENT_SECRET = "CANARYclientsecret4b8f"
REFRESH = "CANARYrefresh2c6d"
ACCESS = "CANARYaccess5e0a"  # issued by the token endpoint
ROTATED = "CANARYrotated8a1f"  # the rotated refresh token
SESSION = "CANARYsession" + secrets.token_hex(6)  # issued by the custom auth's login
CANARIES = [TOKEN, PASSWORD, CLIENT_SECRET, REFRESH, ACCESS, ROTATED, SESSION]


def _leaks(text: str | bytes, where: str) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    found = [f"{c} in {where}" for c in CANARIES if c.encode() in data]
    TALLY.secrets_leaked += len(found)
    return found


def _echo(request: RecordedRequest) -> Reply:
    """A hostile error page: echoes every header and the query string back."""
    return Reply({"error": "boom", "headers": request.headers, "query": request.query}, 500)


def _session_api(api: ApiServer) -> tuple[dict, list[str]]:
    """A custom-auth API: POST /login issues SESSION, which /sess_items requires in
    X-Session and echoes into its next-page link, and /sess_fail quotes in its error."""

    def items(request: RecordedRequest) -> Reply:
        if request.header("x-session") != SESSION:
            return Reply({"error": "log in first"}, 401)
        if request.params.get("page") == "2":
            return Reply({"data": [{"id": 2}], "next": None})
        return Reply({"data": [{"id": 1}], "next": f"/sess_items?page=2&session={SESSION}"})

    api.route("/login", lambda _: Reply({"data": {"session": SESSION}}), methods=("POST",))
    api.route("/sess_items", items)
    api.route("/sess_fail", lambda _: Reply({"error": f"session {SESSION} may not read"}, 403))
    auth = {
        "type": "custom",
        "pre_request": {
            "url": f"{api.url}/login",
            "body": {"user": "{{auth.username}}", "password": "{{auth.password}}"},
            "extract": {"session": "response.data.session"},
        },
        "headers": {"X-Session": "{{session}}"},
    }
    spec = _spec(
        api.url, auth, "/sess_items", pagination={"type": "next_url", "next_url_path": "next"}
    )
    spec["streams"].append({"name": "failing", "endpoint": "/sess_fail", "data_path": "data"})
    return spec, ["--auth-user", "someone", "--auth-pass", PASSWORD]


def _spec(url: str, auth: dict, endpoint: str, **stream: object) -> dict:
    return {
        "version": "1",
        "base_url": url,
        "auth": auth,
        "rate_limit": {"max_retries": 1, "backoff_base": 0.01, "max_wait": 0.02},
        "streams": [{"name": "items", "endpoint": endpoint, "data_path": "data", **stream}],
    }


def test_canaries_never_leak(rq_home: Path, api_server: ApiServer) -> None:
    other = ApiServer().start()
    try:
        leaks = _run_everything(rq_home, api_server, other)
        for req in other.requests:
            leaks += _leaks(repr(req), "a request to the other host")
            assert "authorization" not in req.headers
    finally:
        other.stop()
    leaks += _scan_files(rq_home)
    assert not leaks, leaks
    metadata = [p.read_bytes() for p in (rq_home / "warehouse").rglob("*.metadata.json")]
    assert any(b"rq.resume" in m and b"sess_items?page=2" in m for m in metadata)
    mode = stat.S_IMODE((rq_home / "secret.key").stat().st_mode)
    assert mode == 0o600, oct(mode)


def _run_everything(home: Path, api: ApiServer, other: ApiServer) -> list[str]:
    api.route("/page1", lambda _: Reply({"data": [{"id": 1}], "next": f"{other.url}/page2"}))
    other.route("/page2", lambda _: Reply({"data": [{"id": 2}], "next": None}))
    api.route("/fail", _echo)
    api.route("/missing", lambda r: Reply({"error": "no", "query": r.query}, 404))
    api.route(
        "/token",
        lambda _: Reply({"access_token": ACCESS, "refresh_token": ROTATED, "expires_in": 3600}),
        methods=("POST",),
    )
    api.route("/oauth", lambda _: Reply({"data": [{"id": 1}]}))
    nxt = {"pagination": {"type": "next_url", "next_url_path": "next"}}
    specs = {
        "bearer": (_spec(api.url, {"type": "bearer"}, "/page1", **nxt), ["--auth-token", TOKEN]),
        "basic": (
            _spec(api.url, {"type": "basic"}, "/fail"),
            ["--auth-user", "someone", "--auth-pass", PASSWORD],
        ),
        "oauth": (
            _spec(api.url, {"type": "oauth2", "token_url": f"{api.url}/token"}, "/oauth"),
            ["--client-id", "cid", "--client-secret", CLIENT_SECRET, "--refresh-token", REFRESH],
        ),
        "apikey": (
            _spec(api.url, {"type": "api_key", "query_param": "key"}, "/missing"),
            ["--auth-token", TOKEN],
        ),
        "custom": _session_api(api),
    }
    env = rq_env(RAWQUERY_LOG_LEVEL="DEBUG")
    cwd = home.parent
    results: list[tuple[str, Result]] = []
    for name, (spec, flags) in specs.items():
        write_json(cwd / f"{name}.json", spec)
        results.append(
            (f"spec validate {name}", rq_run(["spec", "validate", f"{name}.json"], env, cwd))
        )
        results.append(
            (
                f"connect {name}",
                rq_run(["connect", name, "--spec", f"{name}.json", *flags], env, cwd),
            )
        )
    # One record a segment: the custom sync commits after page 1 with `rq.resume` (the
    # next-page link the API put the session token in) in the table's metadata.
    segment_env = {**env, "RAWQUERY_SEGMENT_RECORDS": "1"}
    for name in specs:
        run_env = segment_env if name == "custom" else env
        results.append((f"sync {name}", rq_run(["connections", "sync", name], run_env, cwd)))
        results.append(
            (f"status {name}", rq_run(["connections", "status", name, "--json"], env, cwd))
        )
    results.append(("list", rq_run(["connections", "list", "--json"], env, cwd)))
    results.append(
        ("query", rq_run(["query", "SELECT * FROM bearer.items", "--format", "csv"], env, cwd))
    )
    codes = {label: r.code for label, r in results}
    assert codes["sync bearer"] == 0 and codes["sync oauth"] == 0, results
    assert codes["sync basic"] == 1 and codes["sync apikey"] == 1, results
    assert codes["sync custom"] == 1, results  # its `failing` stream fails
    pages = api.requests_to("/sess_items")
    assert [r.params.get("page") for r in pages] == [None, "2"], pages
    assert all(r.header("x-session") == SESSION for r in pages)
    assert "session" not in pages[1].params  # dropped from the link: the header carries it
    status = next(r for label, r in results if label == "status custom")
    assert "may not read" in status.out and "***" in status.out, status.text
    assert any(ACCESS in r.headers.get("authorization", "") for r in api.requests_to("/oauth"))
    assert any(r.params.get("key") == TOKEN for r in api.requests_to("/missing"))
    leaks = [leak for label, r in results for leak in _leaks(r.text, label)]
    # A wrong key: a clear error (exit 2), not garbage or a crash.
    wrong = rq_env(RAWQUERY_SECRET_KEY=Fernet.generate_key().decode())
    bad = rq_run(["connections", "sync", "bearer"], wrong, cwd)
    assert bad.code == 2, bad.text
    assert "key" in bad.err.lower() and "Traceback" not in bad.text, bad.text
    leaks += _leaks(bad.text, "wrong key")
    return leaks


def _scan_files(home: Path) -> list[str]:
    leaks: list[str] = []
    for path in home.rglob("*"):
        if path.is_file():
            leaks += _leaks(path.read_bytes(), str(path.relative_to(home)))
    for path in home.parent.glob("*.log"):
        leaks += _leaks(path.read_bytes(), path.name)
    return leaks


def test_secret_key_file_is_private(rq_home: Path) -> None:
    from rawquery_workers.registry.vault import read_or_create_key_file

    read_or_create_key_file(rq_home / "secret.key")
    assert stat.S_IMODE(os.stat(rq_home / "secret.key").st_mode) == 0o600
