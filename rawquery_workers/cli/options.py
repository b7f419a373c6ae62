"""Options shared by several commands: credential flags and the schedule."""

from __future__ import annotations

from typing import Annotated

import typer

from rawquery_workers.credentials import Credentials

AuthToken = Annotated[
    str | None,
    typer.Option(
        "--auth-token",
        envvar="RAWQUERY_AUTH_TOKEN",
        show_default=False,
        help="API key or bearer token: {{auth.token}} (env RAWQUERY_AUTH_TOKEN).",
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
        help="Password: {{auth.password}} (env RAWQUERY_AUTH_PASS).",
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
        help="OAuth2 client secret (env RAWQUERY_CLIENT_SECRET).",
    ),
]
RefreshToken = Annotated[
    str | None,
    typer.Option(
        "--refresh-token",
        envvar="RAWQUERY_REFRESH_TOKEN",
        show_default=False,
        help="OAuth2 refresh token (env RAWQUERY_REFRESH_TOKEN).",
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
