"""The `rq` / `rawquery` command: one Typer app, a sub-app per command group.

Domain errors become exit codes here and only here: a RawqueryError prints its message
(never a traceback) and exits with its `exit_code` (2 for bad input, 1 for failures).
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from rawquery_workers.cli import (
    connect_cmd,
    connections_cmd,
    demo_cmd,
    maintain_cmd,
    query_cmd,
    secrets_cmd,
    spec_cmd,
    startup,
    worker_cmd,
)
from rawquery_workers.errors import RawqueryError, SpecError
from rawquery_workers.observe import logs

try:  # Typer >= 0.2x bundles its own click: its usage errors are not click's classes
    from typer._click.exceptions import ClickException as _TyperClickException
except ImportError:  # pragma: no cover - a Typer that uses click itself
    from click import ClickException as _TyperClickException  # type: ignore[assignment]

app = typer.Typer(
    name="rq",
    help="Land data from HTTP and GraphQL APIs in Apache Iceberg, from a declarative JSON spec.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
connect_cmd.register(app)
query_cmd.register(app)
demo_cmd.register(app)
worker_cmd.register(app)
maintain_cmd.register(app)
app.add_typer(connections_cmd.app, name="connections", help="Manage and sync connections.")
app.add_typer(spec_cmd.app, name="spec", help="Check a connector spec or print its schema.")
app.add_typer(secrets_cmd.app, name="secrets", help="Manage the credential encryption keys.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"rawquery-workers {version('rawquery-workers')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Land data from HTTP and GraphQL APIs in Apache Iceberg."""


def report(error: RawqueryError) -> None:
    """Print a domain error for a person: one line per problem, on stderr."""
    if isinstance(error, SpecError):
        prefix = f"{error.source}: " if error.source else ""
        for problem in error.problems:
            typer.echo(f"{prefix}{problem}", err=True)
        return
    typer.echo(f"error: {error}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Run `rq` on `argv` (default: this process's arguments) and exit with its code."""
    if argv is None:  # this process's own command line: it ends with the command
        startup.running_as_process()
    try:
        _run(argv)
    finally:
        startup.prepare_exit()


def _run(argv: list[str] | None) -> None:
    try:
        logs.configure()  # RAWQUERY_LOG_LEVEL (default WARNING) and RAWQUERY_LOG_FORMAT
        result = app(args=argv, standalone_mode=False)
    except _TyperClickException as exc:
        _usage_error(exc)
    except typer.Abort:
        _aborted()
    except RawqueryError as exc:
        report(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # the last line of defence: a person sees one line, not a trace
        _click_error(exc)
        if os.environ.get("RAWQUERY_DEBUG"):
            raise
        if _database_error(exc):
            typer.echo(f"error: {_database_error(exc)}", err=True)
            sys.exit(1)
        typer.echo(
            f"internal error: {type(exc).__name__}; rerun with RAWQUERY_DEBUG=1 for details",
            err=True,
        )
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


def _usage_error(exc: _TyperClickException) -> NoReturn:
    exc.show()
    sys.exit(exc.exit_code)


def _aborted() -> NoReturn:
    typer.echo("aborted", err=True)
    sys.exit(130)


def _click_error(exc: Exception) -> None:
    """Exit as for Typer's own errors if `exc` is one of click's (raised by code using click
    directly). click is not imported up front (~10 ms of every start): no code can have
    raised one of its errors unless something imported it."""
    click = sys.modules.get("click")
    if click is None:
        return
    if isinstance(exc, click.ClickException):
        _usage_error(exc)
    if isinstance(exc, click.exceptions.Abort):
        _aborted()


def _database_error(exc: Exception) -> str | None:
    """A clear line for a registry/catalog database that went away (e.g. PostgreSQL
    refusing connections mid-sync); None for other errors."""
    from sqlalchemy.exc import OperationalError

    if not isinstance(exc, OperationalError):
        return None
    text = str(exc.orig or exc).strip().splitlines()
    detail = text[0] if text else type(exc).__name__
    return (
        f"the registry/catalog database is unreachable ({detail}); check "
        "RAWQUERY_CATALOG_URI and the database, then run the sync again (it resumes)"
    )
