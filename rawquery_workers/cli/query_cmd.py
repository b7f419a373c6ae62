"""`rq query "SQL" [--format table|json|csv] [--allow-files]`."""

from __future__ import annotations

import io
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import orjson
import typer

if TYPE_CHECKING:
    import pyarrow as pa

MAX_TABLE_ROWS = 1000


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def query(
    sql: Annotated[str, typer.Argument(help="SQL over tables named CONNECTION.STREAM.")],
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    allow_files: Annotated[
        bool,
        typer.Option(
            "--allow-files",
            help="Let the SQL read and write files (read_csv, COPY ... TO); off by default.",
        ),
    ] = False,
) -> None:
    """Answer SQL over the synced tables (DuckDB). The SQL sees those tables only: no
    files, no network, unless --allow-files."""
    # Imported here: pyiceberg, DuckDB and pyarrow take ~0.5 s to load, which no other
    # command needs.
    import pyarrow.csv as pacsv

    from rawquery_workers.query import run_query
    from rawquery_workers.settings import get_settings
    from rawquery_workers.sink import open_sink

    result = run_query(sql, open_sink(get_settings()), allow_files=allow_files)
    if fmt is Format.json:
        typer.echo(orjson.dumps(result.to_pylist(), option=_JSON_OPTS, default=str).decode())
    elif fmt is Format.csv:
        buffer = io.BytesIO()
        pacsv.write_csv(result, buffer)
        typer.echo(buffer.getvalue().decode().rstrip("\n"))
    else:
        _print_table(result)


_JSON_OPTS = orjson.OPT_INDENT_2 | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


def _print_table(result: pa.Table) -> None:
    from rich.table import Column, Table

    from rawquery_workers.cli.display import console, plain

    # Values and names are plain Text, never markup; by position, as a join may return
    # two columns of the same name.
    table = Table(*(Column(plain(name)) for name in result.column_names))
    shown = result.slice(0, MAX_TABLE_ROWS)
    for row in zip(*(column.to_pylist() for column in shown.columns), strict=True):
        table.add_row(*map(plain, row))
    console.print(table)
    more = f" (showing {MAX_TABLE_ROWS})" if result.num_rows > MAX_TABLE_ROWS else ""
    console.print(f"{result.num_rows} rows{more}")


def register(app: typer.Typer) -> None:
    app.command("query")(query)
