"""Options shared by several commands: credential flags and the schedule.

A secret given as a flag's value (`--auth-token T`) is visible to every user of the machine
(`ps`, /proc) while the command runs. So each secret flag also takes `-` (read the value
from stdin, e.g. `pass show api | rq connect ... --auth-token -`) or `prompt` (ask for it
on the terminal, typing hidden), and has an environment variable (RAWQUERY_AUTH_TOKEN, ...).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rawquery_workers.spec.credentials import Credentials

STDIN = "-"
PROMPT = "prompt"
_STDIN_TAKEN = "rawquery.stdin_taken_by"
_LABELS = {"--auth-pass": "Password"}


def _secret_help(what: str) -> str:
    return f"{what}. '-' reads it from stdin, 'prompt' asks for it (hidden): kept out of `ps`."


def secret_value(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """A secret flag's value: as given, or read from stdin (`-`) or a hidden prompt
    (`prompt`). Only one flag can read stdin."""
    flag = param.opts[0] if param.opts else str(param.name)
    if value == PROMPT:
        label = _LABELS.get(flag) or flag.lstrip("-").replace("-", " ").capitalize()
        return str(typer.prompt(label, hide_input=True, err=True))
    if value != STDIN:
        return value
    taken = ctx.meta.get(_STDIN_TAKEN)
    if taken:
        raise typer.BadParameter(f"stdin is already read for {taken}; give one flag '-'")
    ctx.meta[_STDIN_TAKEN] = flag
    text = sys.stdin.read().rstrip("\r\n")
    if not text:
        raise typer.BadParameter("'-' reads the value from stdin, but stdin was empty")
    return text


AuthToken = Annotated[
    str | None,
    typer.Option(
        "--auth-token",
        envvar="RAWQUERY_AUTH_TOKEN",
        show_default=False,
        callback=secret_value,
        help=_secret_help("API key or bearer token: {{auth.token}}"),
    ),
]
AuthUser = Annotated[
    str | None,
    typer.Option(
        "--auth-user",
        envvar="RAWQUERY_AUTH_USER",
        show_default=False,
        help="Username: {{auth.username}}.",
    ),
]
AuthPass = Annotated[
    str | None,
    typer.Option(
        "--auth-pass",
        envvar="RAWQUERY_AUTH_PASS",
        show_default=False,
        callback=secret_value,
        help=_secret_help("Password: {{auth.password}}"),
    ),
]
ClientId = Annotated[
    str | None,
    typer.Option(
        "--client-id", envvar="RAWQUERY_CLIENT_ID", show_default=False, help="OAuth2 client id."
    ),
]
ClientSecret = Annotated[
    str | None,
    typer.Option(
        "--client-secret",
        envvar="RAWQUERY_CLIENT_SECRET",
        show_default=False,
        callback=secret_value,
        help=_secret_help("OAuth2 client secret"),
    ),
]
RefreshToken = Annotated[
    str | None,
    typer.Option(
        "--refresh-token",
        envvar="RAWQUERY_REFRESH_TOKEN",
        show_default=False,
        callback=secret_value,
        help=_secret_help("OAuth2 refresh token"),
    ),
]
Schedule = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        show_default=False,
        help="hourly, daily, weekly or a five-field cron expression (UTC).",
    ),
]


def credentials_from_flags(
    token: str | None,
    user: str | None,
    password: str | None,
    client_id: str | None,
    client_secret: str | None,
    refresh_token: str | None,
) -> Credentials:
    return Credentials(
        token=token,
        username=user,
        password=password,
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
    )


def any_given(creds: Credentials) -> bool:
    return bool(creds.secrets()) or creds.username is not None
