"""rawquery-workers: land data from HTTP and GraphQL APIs in Apache Iceberg."""

from __future__ import annotations

import os
from typing import Any

# pyarrow's allocator (mimalloc) keeps freed pages a while by default; a sync frees Arrow
# buffers in bursts, and returning them at once lowers peak RSS (docs/decisions/005).
# Read when pyarrow loads, hence here; a user's value wins.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")


def __getattr__(name: str) -> Any:
    # `celery -A rawquery_workers worker` looks up `rawquery_workers.celery`; importing the
    # Celery app only then keeps `rq` and embedded mode free of it.
    if name == "celery":
        from rawquery_workers.distributed.tasks import app

        return app
    raise AttributeError(f"module 'rawquery_workers' has no attribute {name!r}")
