"""Secrets off argv (`ps` shows every process's arguments): a secret flag takes `-` (read it
from stdin) or `prompt` (hidden input on the terminal); and the SQLite catalog/registry
database, which holds the encrypted credentials, is private to its owner (0600).

The `-` and `prompt` tests run `rq` as a real process (stdin piped, or a pseudo-terminal).
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rawquery_workers.registry import dispose_engines, open_registry
from rawquery_workers.settings import reset_settings
from rawquery_workers.spec.credentials import Credentials
from tests.e2e.helpers import RQ, Cli, Result

SECRET = "CANARY-stdin-4e9b1f"
USERS = [{"name": "users", "endpoint": "/users"}]
BASE = "http://127.0.0.1:1/v1"  # never contacted: connect stores, it does not sync


def _spec(auth: dict[str, Any]) -> dict[str, Any]:
    return {"version": "1", "base_url": BASE, "auth": auth, "streams": USERS}


def _rq_with_stdin(stdin: str, *args: str) -> Result:
    import subprocess

    proc = subprocess.run(
        [str(RQ), *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _stored(name: str) -> Credentials:
    reset_settings()
    dispose_engines()
    return open_registry().get_credentials(name)


OAUTH = {"type": "oauth2", "token_url": f"{BASE}/token"}


@pytest.mark.parametrize(
    ("auth", "flags", "field"),
    [
        ({"type": "bearer"}, ["--auth-token", "-"], "token"),
        ({"type": "basic"}, ["--auth-user", "me", "--auth-pass", "-"], "password"),
        (
            {**OAUTH, "grant_type": "client_credentials"},
            ["--client-id", "app", "--client-secret", "-"],
            "client_secret",
        ),
        (
            OAUTH,
            ["--client-id", "app", "--client-secret", "s", "--refresh-token", "-"],
            "refresh_token",
        ),
    ],
)
def test_a_dash_reads_the_secret_from_stdin(
    rq_home: Path,
    write_spec: Callable[..., Path],
    auth: dict[str, Any],
    flags: list[str],
    field: str,
) -> None:
    spec = write_spec(_spec(auth))
    result = _rq_with_stdin(SECRET + "\n", "connect", "c1", "--spec", str(spec), *flags)
    assert result.code == 0, result.err
    assert SECRET not in result.out + result.err
    assert getattr(_stored("c1"), field) == SECRET


def test_update_reads_stdin_too(rq_home: Path, cli: Cli, write_spec: Callable[..., Path]) -> None:
    spec = write_spec(_spec({"type": "bearer"}))
    assert cli("connect", "c1", "--spec", str(spec), "--auth-token", "old").code == 0
    result = _rq_with_stdin(f"{SECRET}\r\n", "connections", "update", "c1", "--auth-token", "-")
    assert result.code == 0, result.err
    assert _stored("c1").token == SECRET


def test_stdin_serves_one_flag_and_must_hold_a_value(
    rq_home: Path, cli: Cli, write_spec: Callable[..., Path]
) -> None:
    spec = str(write_spec(_spec({"type": "basic"})))
    twice = _rq_with_stdin("a\nb\n", "connect", "c1", "--spec", spec, "--auth-user", "u",
                           "--auth-pass", "-", "--auth-token", "-")  # fmt: skip
    assert twice.code == 2 and "stdin is already read for" in twice.err, twice.err
    empty = _rq_with_stdin("", "connect", "c1", "--spec", spec, "--auth-user", "u",
                           "--auth-pass", "-")  # fmt: skip
    assert empty.code == 2 and "stdin was empty" in empty.err, empty.err
    assert "Traceback" not in twice.err + empty.err
    assert cli("connections", "list", "--json").json() == []


def _on_a_terminal(args: list[str], typed: str, wait_for: bytes) -> tuple[int, bytes]:
    """Run `rq` on a pseudo-terminal; type `typed` once `wait_for` shows. (exit code, output)"""
    pid, fd = pty.fork()
    if pid == 0:  # the child: rq, with the pty as its controlling terminal
        os.execv(str(RQ), [str(RQ), *args])
    output = b""
    typed_yet = False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child exited and closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if not typed_yet and wait_for in output:
                os.write(fd, typed.encode() + b"\n")
                typed_yet = True
    finally:
        done, status = os.waitpid(pid, os.WNOHANG)
        if not done:  # still waiting (for input that never came): stop it
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output


def test_prompt_asks_on_the_terminal_without_echoing(
    rq_home: Path, write_spec: Callable[..., Path]
) -> None:
    spec = str(write_spec(_spec({"type": "bearer"})))
    # getpass turns echo off, then writes the " " after the label: type after that
    code, output = _on_a_terminal(
        ["connect", "c1", "--spec", spec, "--auth-token", "prompt"], SECRET, b"Auth token: "
    )
    assert b"Auth token:" in output, output
    assert code == 0, output
    assert SECRET.encode() not in output  # typed with echo off
    assert _stored("c1").token == SECRET


def test_help_says_how_to_keep_secrets_out_of_argv(cli: Cli) -> None:
    for command in (["connect"], ["connections", "update"], ["spec", "preview"]):
        text = " ".join(re.sub("[│╭╮╰╯─]", " ", cli(*command, "--help").out).split())
        assert "'-' reads it from stdin, 'prompt' asks for it (hidden)" in text, command
        assert "RAWQUERY_AUTH_TOKEN" in text and "RAWQUERY_CLIENT_SECRET" in text


# --- catalog.db is private ----------------------------------------------------------------


def _private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


@pytest.mark.parametrize(
    "command", [["connections", "list"], ["query", "SELECT 1 AS x"]], ids=["registry", "catalog"]
)
def test_catalog_db_is_created_0600(rq_home: Path, cli: Cli, command: list[str]) -> None:
    old = os.umask(0o022)
    try:
        assert cli(*command).code == 0
    finally:
        os.umask(old)
    database = rq_home / "catalog.db"
    assert _private(database), oct(database.stat().st_mode)
    for side in rq_home.glob("catalog.db-*"):
        assert _private(side), side


def test_an_existing_readable_catalog_db_is_tightened(rq_home: Path, cli: Cli) -> None:
    rq_home.mkdir(parents=True)
    database = rq_home / "catalog.db"
    sqlite3.connect(database).close()
    database.touch()
    database.chmod(0o644)
    assert cli("connections", "list").code == 0
    assert _private(database), oct(database.stat().st_mode)
