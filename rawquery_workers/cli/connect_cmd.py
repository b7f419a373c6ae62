"""`rq connect`: validate a spec, store it with encrypted credentials and a schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rawquery_workers.cli.options import (
    AuthPass,
    AuthToken,
    AuthUser,
    ClientId,
    ClientSecret,
    RefreshToken,
    Schedule,
    credentials_from_flags,
)


def connect(
    name: Annotated[str, typer.Argument(help="Connection name (the Iceberg namespace).")],
    spec: Annotated[Path, typer.Option("--spec", help="The connector spec (JSON).")],
    auth_token: AuthToken = None,
    auth_user: AuthUser = None,
    auth_pass: AuthPass = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    refresh_token: RefreshToken = None,
    schedule: Schedule = None,
) -> None:
    """Register an API from its spec, with encrypted credentials and an optional schedule."""
    # Imported here, not at the top: every `rq` start loads this module for its options.
    from rawquery_workers.registry import open_registry
    from rawquery_workers.registry.connections import (
        check_connection_name,
        checked_schedule,
        load_checked_spec,
        require_credentials,
    )
    from rawquery_workers.registry.credential_origins import plain_http_warnings

    check_connection_name(name)
    parsed, spec_json = load_checked_spec(spec)
    creds = credentials_from_flags(
        auth_token, auth_user, auth_pass, client_id, client_secret, refresh_token
    )
    require_credentials(parsed, creds, str(spec))
    cron = checked_schedule(schedule)
    open_registry().create_connection(name, spec_json, creds, cron)
    for line in plain_http_warnings(parsed):
        typer.echo(line, err=True)
    streams = ", ".join(s.name for s in parsed.streams)
    when = f"; scheduled {cron} (UTC)" if cron else ""
    typer.echo(f"connected '{name}': {len(parsed.streams)} streams ({streams}){when}")
    typer.echo(f"next: rq connections sync {name}")


def register(app: typer.Typer) -> None:
    app.command("connect")(connect)
