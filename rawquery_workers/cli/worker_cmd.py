"""`rq worker` and `rq beat`: the processes of distributed mode."""

from __future__ import annotations

import typer

from rawquery_workers.errors import ConfigError


def _need_redis() -> None:
    from rawquery_workers.settings import get_settings

    if not get_settings().redis_url:
        raise ConfigError(
            "RAWQUERY_REDIS_URL is not set: workers and beat run only in distributed mode "
            "(embedded syncs run in `rq connections sync` itself)"
        )


def worker(ctx: typer.Context) -> None:
    """A Celery worker (extra arguments go to `celery worker`, e.g. --concurrency 4)."""
    _need_redis()
    from rawquery_workers.distributed.tasks import app

    app.worker_main(["worker", "--loglevel=INFO", *ctx.args])


def beat(ctx: typer.Context) -> None:
    """The scheduler: fires scheduled syncs (extra arguments go to `celery beat`)."""
    _need_redis()
    from rawquery_workers.distributed.tasks import app

    app.start(["beat", "--loglevel=INFO", *ctx.args])


def register(app: typer.Typer) -> None:
    extra = {"allow_extra_args": True, "ignore_unknown_options": True}
    app.command("worker", context_settings=extra)(worker)
    app.command("beat", context_settings=extra)(beat)
