"""`rq maintain [CONNECTION] [--stream S]`: expire, compact, rewrite manifests, delete orphans
(rawquery_workers/runner/maintain.py) and say what was done."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import orjson
import typer


def maintain(
    connection: Annotated[
        str | None, typer.Argument(help="The connection (default: every connection).")
    ] = None,
    stream: Annotated[
        list[str] | None,
        typer.Option("--stream", "-s", help="Only this stream's tables (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Keep tables small: expire old snapshots, compact small files, rewrite manifests and
    delete files nothing refers to. Runs under the connection's lock, like a sync."""
    from rawquery_workers.errors import SpecError
    from rawquery_workers.registry import open_registry
    from rawquery_workers.runner.maintain import maintain_connection
    from rawquery_workers.settings import get_settings

    settings = get_settings()
    registry = open_registry(settings)
    if stream and connection is None:
        raise SpecError("--stream needs a CONNECTION: rq maintain CONNECTION --stream NAME")
    names = [connection] if connection else [c.name for c in registry.list_connections()]
    reports = [
        maintain_connection(registry, settings, name, streams=stream or None) for name in names
    ]
    if as_json:
        rows = [dataclasses.asdict(r) for r in reports]
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for report in reports:
        for line in report.lines():
            typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command("maintain")(maintain)
