"""`rq flower`: Flower, the Celery monitor, with its /metrics behind the same authentication
as its UI.

Flower 2.x answers /metrics (and /healthcheck) without asking for the credentials of
`--basic_auth` or `--auth`, and has no option to change that (its docs/auth.rst lists both
as "exempt from authentication"); those metrics name every task, worker and queue. Here the
route to its metrics handler is pointed at a subclass that requires the UI's login, the way
Flower's own pages do (tornado's `authenticated`). /healthcheck stays open: it answers "OK"
and nothing more, for the container's healthcheck.
"""

from __future__ import annotations

from typing import Any

from rawquery_workers.errors import ConfigError


def require_auth_on_metrics() -> None:
    """Make Flower's /metrics route ask for the UI's credentials (once per process)."""
    try:
        from flower import urls
        from flower.views import monitor
        from tornado import web
    except ImportError as exc:
        raise ConfigError(
            f"Flower is not installed ({exc.name} is missing): "
            "pip install 'rawquery-workers[monitoring]'"
        ) from None

    class AuthenticatedMetrics(monitor.Metrics):
        requires_login = True

        @web.authenticated
        async def get(self) -> None:
            await super().get()

    routes: list[Any] = urls.handlers
    found = False
    for index, route in enumerate(routes):
        if not (isinstance(route, tuple) and len(route) >= 2 and isinstance(route[1], type)):
            continue
        if route[1] is monitor.Metrics:
            routes[index] = (route[0], AuthenticatedMetrics, *route[2:])
            found = True
        elif issubclass(route[1], monitor.Metrics) and getattr(route[1], "requires_login", False):
            found = True  # done before in this process
    if not found:
        raise ConfigError(
            "this Flower has no /metrics route where Flower 2.x has it, so `rq flower` "
            "cannot put it behind the UI's login; install flower 2.x (deploy/constraints.txt) "
            "or run `celery flower` behind a proxy that authenticates every path"
        )


def run(argv: list[str]) -> None:
    """Run Flower on the distributed app with `argv` (Flower's options, e.g. --port=5555)."""
    require_auth_on_metrics()
    from rawquery_workers.distributed.celery_app import app

    app.start(["flower", *argv])
