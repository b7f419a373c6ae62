"""`rq connections list|update|sync|status|delete`.

The commands import what they use when they run: every `rq` start loads this module for its
options, and `rq connections sync --no-wait` should not pay for the tables, the spec
models or the database of the other commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from rawquery_workers.cli import startup
from rawquery_workers.cli.options import (
    AuthPass,
    AuthToken,
    AuthUser,
    ClientId,
    ClientSecret,
    RefreshToken,
    Schedule,
    any_given,
    credentials_from_flags,
)
from rawquery_workers.errors import ConflictError, RawqueryError

if TYPE_CHECKING:
    from rawquery_workers.registry import Registry
    from rawquery_workers.runner.sync import SyncOutcome
    from rawquery_workers.settings import Settings
    from rawquery_workers.spec.models import Spec

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_connections(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List registered connections."""
    from rawquery_workers.cli import display
    from rawquery_workers.registry import open_registry
    from rawquery_workers.spec.loading import parse_spec

    rows = []
    for record in open_registry().list_connections():
        spec = parse_spec(record.spec)
        rows.append(
            {
                "name": record.name,
                "streams": [s.name for s in spec.streams],
                "schedule": record.schedule,
                "base_url": spec.base_url,
                "created_at": record.created_at.isoformat(),
                "updated_at": record.updated_at.isoformat(),
            }
        )
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    else:
        display.connections_table(rows)


@app.command()
def update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Connection name.")],
    spec: Annotated[Path | None, typer.Option("--spec", help="The new spec (JSON).")] = None,
    auth_token: AuthToken = None,
    auth_user: AuthUser = None,
    auth_pass: AuthPass = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    refresh_token: RefreshToken = None,
    schedule: Schedule = None,
    no_schedule: Annotated[
        bool, typer.Option("--no-schedule", help="Remove the schedule.")
    ] = False,
    keep_credentials: Annotated[
        bool,
        typer.Option(
            "--keep-credentials",
            help="With a --spec that sends credentials to another host: send the stored "
            "ones there (prints what moves where).",
        ),
    ] = False,
) -> None:
    """Replace a connection's spec, credentials or schedule (validated before storing).

    Only credential flags given on the command line replace stored credentials (their
    environment variables, which `rq connect` reads, are ignored here). A --spec that sends
    credentials to another origin needs them again, or --keep-credentials.
    """
    from rawquery_workers.registry import open_registry
    from rawquery_workers.registry.connections import (
        checked_schedule,
        load_checked_spec,
        updated_credentials,
    )
    from rawquery_workers.registry.credential_origins import plain_http_warnings
    from rawquery_workers.spec.loading import parse_spec

    registry = open_registry()
    record = registry.get_connection(name)
    flags = _command_line_only(
        ctx, auth_token, auth_user, auth_pass, client_id, client_secret, refresh_token
    )
    given = credentials_from_flags(*flags)
    if spec:
        old = _stored_spec(record.spec)
        parsed, spec_json = load_checked_spec(spec)
    else:
        old = parsed = parse_spec(record.spec)
        spec_json = record.spec
    stored = registry.get_credentials(name)
    creds, moved = updated_credentials(
        old,
        parsed,
        stored,
        given if any_given(given) else None,
        keep=keep_credentials,
        source=str(spec or name),
    )
    changes: dict[str, Any] = {}
    if spec:
        changes["spec_json"] = spec_json
    if creds is not None:
        changes["credentials"] = creds
    if no_schedule:
        changes["schedule"] = None
    elif schedule is not None:
        changes["schedule"] = checked_schedule(schedule)
    registry.update_connection(name, **changes)
    for move in moved:
        typer.echo(str(move))
    if (creds or stored).secrets():
        for line in plain_http_warnings(parsed):
            typer.echo(line, err=True)
    typer.echo(f"updated '{name}': {', '.join(_change_names(changes)) or 'nothing changed'}")


def _stored_spec(spec_json: dict[str, Any]) -> Spec | None:
    """The stored spec, or None when it no longer validates (stored under older rules):
    a new spec must be able to replace it, its destinations then count as all new."""
    from rawquery_workers.errors import SpecError
    from rawquery_workers.spec.loading import parse_spec

    try:
        return parse_spec(spec_json)
    except SpecError:
        return None


def _command_line_only(ctx: typer.Context, *values: str | None) -> list[str | None]:
    """The credential flags' values (in `_CREDENTIAL_PARAMS` order), without those taken
    from their environment variables: an exported RAWQUERY_AUTH_TOKEN must not silently
    replace stored credentials. Each one ignored is named on stderr."""
    params = {p.name: p for p in ctx.command.params}
    kept: list[str | None] = []
    for key, value in zip(_CREDENTIAL_PARAMS, values, strict=True):
        # By name: typer ships its own copy of click, whose ParameterSource this is.
        source = getattr(ctx.get_parameter_source(key), "name", None)
        if value is not None and source == "ENVIRONMENT":
            param = params[key]
            typer.echo(
                f"note: {param.envvar} is set but ignored: `rq connections update` replaces "
                f"stored credentials only with flags on its command line ({param.opts[0]})",
                err=True,
            )
            value = None
        kept.append(value)
    return kept


_CREDENTIAL_PARAMS = (
    "auth_token", "auth_user", "auth_pass", "client_id", "client_secret", "refresh_token",
)  # fmt: skip


def _change_names(changes: dict[str, Any]) -> list[str]:
    names = {"spec_json": "spec", "credentials": "credentials", "schedule": "schedule"}
    return [names[k] for k in changes]


@app.command()
def sync(
    name: Annotated[str, typer.Argument(help="Connection name.")],
    stream: Annotated[
        list[str] | None, typer.Option("--stream", help="Only this stream (repeatable).")
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Replace each table's contents atomically.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait and show progress, or return at once.")
    ] = True,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            "--metrics-file",
            help="When the sync ends, write its Prometheus metrics to this file "
            "(node_exporter's textfile-collector format). A sync in this process only: "
            "workers serve theirs on RAWQUERY_METRICS_PORT.",
        ),
    ] = None,
) -> None:
    """Sync a connection: every stream (or the --stream ones) into Iceberg."""
    with startup.gc_paused():  # the start-up, up to the enqueue: see cli/startup.py
        from rawquery_workers.registry import open_registry
        from rawquery_workers.registry.connections import plan_sync
        from rawquery_workers.settings import get_settings

        settings = get_settings()
        if metrics_file is not None:
            _check_metrics_file(settings, wait)
        registry = open_registry(settings)
        sync_id, streams = plan_sync(registry, name, stream, full_refresh)
        if settings.distributed:
            _hand_to_workers(registry, name, sync_id)
    if settings.distributed and not wait:
        typer.echo(sync_id)
        return
    from rawquery_workers.cli import display  # rich: progress and the summary only

    if settings.distributed:
        outcome = display.follow_sync(registry, sync_id)
    else:
        from rawquery_workers.observe.exposition import textfile_at_end

        with textfile_at_end(metrics_file, name):
            outcome = _run_here(registry, settings, sync_id, streams, wait)
    if outcome is None:  # --no-wait
        typer.echo(sync_id)
        return
    display.sync_summary(outcome)
    if not outcome.ok:
        raise typer.Exit(1)


def _check_metrics_file(settings: Settings, wait: bool) -> None:
    """--metrics-file is written by the process that runs the sync, when it ends."""
    where = None
    if settings.distributed:
        where = (
            "this sync runs on the workers (RAWQUERY_REDIS_URL is set), which serve its "
            "metrics on RAWQUERY_METRICS_PORT"
        )
    elif not wait:
        where = "it is written when the sync ends, so it needs --wait"
    if where:
        raise typer.BadParameter(where, param_hint="'--metrics-file'")


def _hand_to_workers(registry: Registry, name: str, sync_id: str) -> None:
    """Distributed mode: take the lease, then enqueue. Loads Redis and Celery's client only,
    not the tasks nor the pipeline behind them."""
    from rawquery_workers.distributed.celery_app import enqueue_sync
    from rawquery_workers.distributed.lease import claim

    claim(registry, name, sync_id)  # ConflictError (exit 1) while another sync runs
    try:
        enqueue_sync(sync_id)
    except Exception as exc:  # the broker is unreachable: leave nothing behind
        registry.leases.release(name, sync_id)
        registry.forget_sync(sync_id)
        raise broker_unreachable(exc) from None


def _run_here(
    registry: Registry, settings: Settings, sync_id: str, streams: list[str], wait: bool
) -> SyncOutcome | None:
    """Embedded mode: run the sync in this process, or in a detached one with --no-wait."""
    from rawquery_workers.cli import display
    from rawquery_workers.runner.sync import run_sync, spawn_background

    if not wait:
        spawn_background(sync_id, settings)
        return None
    with display.Progress(streams) as progress:
        return run_sync(sync_id, registry=registry, settings=settings, on_progress=progress.update)


@app.command()
def status(
    name: Annotated[str, typer.Argument(help="Connection name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per-stream status of the latest sync of each stream."""
    from rawquery_workers.cli import display
    from rawquery_workers.registry import open_registry
    from rawquery_workers.settings import get_settings
    from rawquery_workers.spec.loading import parse_spec

    registry = open_registry()
    record = registry.get_connection(name)
    spec = parse_spec(record.spec)
    registry.leases.recognise_dead(name, get_settings().lease_seconds)  # a killed sync's runs
    runs = registry.latest_stream_runs(name, [s.name for s in spec.streams])
    streams = [display.run_as_dict(run) for run in runs]
    skipped = [display.refused_as_dict(s) for s in registry.refused_syncs(name)]
    if as_json:
        payload = {"connection": name, "streams": streams, "skipped": skipped}
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    else:
        display.status_table(name, record.schedule, runs)
        display.skipped_lines(skipped)


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Connection name.")],
    drop_tables: Annotated[
        bool, typer.Option("--drop-tables", help="Also drop its Iceberg tables.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Cancel a sync of it that is running, then delete.")
    ] = False,
) -> None:
    """Remove a connection, its credentials and schedule (tables stay unless --drop-tables).
    Refused while one of its syncs runs, unless --force (which cancels it first)."""
    from rawquery_workers.registry import open_registry
    from rawquery_workers.settings import get_settings

    registry = open_registry()
    registry.get_connection(name)
    _stop_running_sync(registry, name, force)
    dropped: list[str] = []
    if drop_tables:
        from rawquery_workers.sink import open_sink

        dropped = open_sink(get_settings()).drop_namespace_tables(name)
    registry.delete_connection(name)
    kept = "" if drop_tables else f"; its tables stay (query them as {name}.STREAM)"
    typer.echo(f"deleted '{name}'{kept}" + (f"; dropped {len(dropped)} tables" if dropped else ""))


CANCELLED = "cancelled: its connection was deleted (`rq connections delete --force`)"


def _stop_running_sync(registry: Registry, name: str, force: bool) -> None:
    """Refuse to delete a connection while one of its syncs holds its lease; with `force`,
    cancel that sync first: its runs fail, its lease is freed, and the steps its workers
    still have are dropped (a step of a finished sync does nothing)."""
    from rawquery_workers.registry.leases import sync_conflict
    from rawquery_workers.settings import get_settings

    registry.leases.recognise_dead(name, get_settings().lease_seconds)
    held = registry.leases.holder(name)
    if held is None:
        return
    if not force:
        busy = sync_conflict(name, held.owner)
        raise ConflictError(
            f"{busy}; wait for it to finish, or cancel it: `rq connections delete {name} --force`"
        )
    registry.finish_sync(held.sync_id, "failed", error=CANCELLED)
    registry.leases.release(name, held.sync_id)


def broker_unreachable(exc: BaseException) -> RawqueryError:
    import redis

    from rawquery_workers.distributed.redis_keys import redis_address
    from rawquery_workers.settings import get_settings

    where = redis_address(redis.Redis.from_url(get_settings().redis_url or "redis://"))
    return RawqueryError(
        f"could not hand the sync to the workers: Redis at {where} is unreachable "
        f"({type(exc).__name__}); nothing was queued. Start Redis (or unset RAWQUERY_REDIS_URL "
        "to sync in this process) and run the sync again"
    )
