"""`rq spec validate FILE`, `rq spec schema` and `rq spec preview FILE`: check a connector
spec before connecting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from rawquery_workers.cli.options import (
    AuthPass,
    AuthToken,
    AuthUser,
    ClientId,
    ClientSecret,
    RefreshToken,
    credentials_from_flags,
)

app = typer.Typer(
    help="Check a connector spec or print its JSON Schema.",
    no_args_is_help=True,
)


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="The spec file (JSON).", show_default=False)],
) -> None:
    """Check FILE: print every problem with its JSON path (exit 2), or a summary (exit 0)."""
    from rawquery_workers.spec.loading import load_spec_file

    spec = load_spec_file(file)
    names = ", ".join(stream.name for stream in spec.streams)
    count = len(spec.streams)
    typer.echo(f"{file}: valid ({count} stream{'s' if count != 1 else ''}: {names})")


@app.command()
def schema() -> None:
    """Print the spec's JSON Schema (draft 2020-12), e.g. for an editor."""
    from rawquery_workers.spec.schema import spec_json_schema

    typer.echo(orjson.dumps(spec_json_schema(), option=orjson.OPT_INDENT_2).decode())


@app.command()
def preview(
    file: Annotated[Path, typer.Argument(help="The spec file (JSON).", show_default=False)],
    stream: Annotated[
        list[str] | None,
        typer.Option("--stream", show_default=False, help="Only this stream (repeatable)."),
    ] = None,
    pages: Annotated[int, typer.Option("--pages", min=1, help="Pages to read per stream.")] = 2,
    auth_token: AuthToken = None,
    auth_user: AuthUser = None,
    auth_pass: AuthPass = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    refresh_token: RefreshToken = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> int:
    """Test-read FILE: requests, pages, records, table schemas and hints; writes nothing.

    Exits 0 when every stream was read, 1 when one failed (its error is shown).
    """
    # Imported here: the extraction and transform stack is only needed by preview.
    from rawquery_workers.authoring.preview import preview_spec
    from rawquery_workers.cli.preview_display import preview_json, preview_lines
    from rawquery_workers.spec.loading import load_spec_file

    spec = load_spec_file(file)
    creds = credentials_from_flags(
        auth_token, auth_user, auth_pass, client_id, client_secret, refresh_token
    )
    result = preview_spec(spec, creds, streams=stream or (), max_pages=pages, source=str(file))
    if as_json:
        typer.echo(preview_json(result))
    else:
        typer.echo("\n".join(preview_lines(result)))
    return 0 if result.ok else 1
