"""rawquery-workers: land data from HTTP and GraphQL APIs in Apache Iceberg."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # `celery -A rawquery_workers worker` looks up `rawquery_workers.celery`; importing the
    # Celery app only then keeps `rq` and embedded mode free of it.
    if name == "celery":
        from rawquery_workers.tasks import app

        return app
    raise AttributeError(f"module 'rawquery_workers' has no attribute {name!r}")
