"""`rq worker`, `rq beat` and `rq flower`: the processes of distributed mode.

Their log level is RAWQUERY_LOG_LEVEL when it is set (it wins over `--loglevel`), else INFO;
RAWQUERY_LOG_FORMAT=json makes every line a JSON object (observe/logs.py).
"""

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


def flower(ctx: typer.Context) -> None:
    """Flower, the Celery monitor, with /metrics behind its login too (extra arguments go
    to Flower, e.g. --port=5555; credentials in FLOWER_BASIC_AUTH=user:password)."""
    _need_redis()
    from rawquery_workers.distributed.flower_monitor import run

    run(list(ctx.args))


def register(app: typer.Typer) -> None:
    extra = {"allow_extra_args": True, "ignore_unknown_options": True}
    app.command("worker", context_settings=extra)(worker)
    app.command("beat", context_settings=extra)(beat)
    app.command("flower", context_settings=extra)(flower)
