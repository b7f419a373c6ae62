"""`rq spec validate FILE` and `rq spec schema`: check a connector spec before connecting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from rawquery_workers.spec.loading import load_spec_file
from rawquery_workers.spec.schema import spec_json_schema

app = typer.Typer(
    help="Check a connector spec or print its JSON Schema.",
    no_args_is_help=True,
)


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="The spec file (JSON).", show_default=False)],
) -> None:
    """Check FILE: print every problem with its JSON path (exit 2), or a summary (exit 0)."""
    spec = load_spec_file(file)
    names = ", ".join(stream.name for stream in spec.streams)
    count = len(spec.streams)
    typer.echo(f"{file}: valid ({count} stream{'s' if count != 1 else ''}: {names})")


@app.command()
def schema() -> None:
    """Print the spec's JSON Schema (draft 2020-12), e.g. for an editor."""
    typer.echo(orjson.dumps(spec_json_schema(), option=orjson.OPT_INDENT_2).decode())
