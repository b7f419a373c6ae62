"""Item 7: canary credentials never show up anywhere but encrypted in the registry.

Four connections (bearer, basic, OAuth2 with a rotating refresh token, api_key in the
query string) run `connect`, successful and failing syncs (whose errors carry URLs and
statuses), `status`, `list`, `query` and `spec validate` as subprocesses with
RAWQUERY_LOG_LEVEL=DEBUG. Their output, the warehouse (data and metadata files), the
catalog/registry database and the sync logs are searched for every canary.
"""

from __future__ import annotations

import os
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
CANARIES = [TOKEN, PASSWORD, CLIENT_SECRET, REFRESH, ACCESS, ROTATED]


def _leaks(text: str | bytes, where: str) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    found = [f"{c} in {where}" for c in CANARIES if c.encode() in data]
    TALLY.secrets_leaked += len(found)
    return found


def _echo(request: RecordedRequest) -> Reply:
    """A hostile error page: echoes every header and the query string back."""
    return Reply({"error": "boom", "headers": request.headers, "query": request.query}, 500)


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
    for name in specs:
        results.append((f"sync {name}", rq_run(["connections", "sync", name], env, cwd)))
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
