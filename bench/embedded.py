"""One embedded sync of the bench API into Iceberg, in this process; prints JSON figures.

    .venv/bin/python bench/embedded.py --url http://127.0.0.1:PORT --home DIR [--token T]

The first call in a fresh `--home` is a first sync; the next one in the same home is a
second sync of the same records (every key present: the merge path). The figures: the
sync's wall time (run_sync only, not imports or set-up), rows per table, data files per
table, commits (snapshots) per table and this process's peak RSS (ru_maxrss).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson

NAME = "bench"


STYLES = ("offset", "pages", "cursor", "children")
PAGINATION: dict[str, dict[str, Any]] = {
    "offset": {"type": "offset", "param": "offset", "limit_param": "limit", "total_path": "total"},
    "pages": {"type": "page_number", "param": "page", "page_size_param": "per_page"},
    "cursor": {"type": "cursor", "cursor_path": "next_cursor", "param": "cursor"},
}


def spec(
    url: str,
    page_size: int = 100,
    token: bool = True,
    style: str = "offset",
    concurrency: int = 1,
    rate: float | None = None,
) -> dict[str, Any]:
    """The bench connection: the orders stream read in `style` (bench/api.py's endpoints);
    `children` reads them as one request per parent of /parents."""
    orders: dict[str, Any] = {
        "name": "orders",
        "data_path": "data",
        "primary_key": ["id"],
        "flatten": {"customer": "prefix"},
        "expand": {"line_items": {"primary_key": "id", "parent_key": "order_id"}},
        "types": {"tags": "json", "created_at": "timestamp", "updated_at": "timestamp"},
    }
    streams = [orders]
    if style == "children":
        orders |= {
            "endpoint": "/parents/{{parent.id}}/orders",
            "parent": {"stream": "parents", "fields": {"parent_id": "id"}},
        }
        streams = [{"name": "parents", "endpoint": "/parents", "data_path": "data",
                    "primary_key": ["id"]}, orders]  # fmt: skip
    else:
        limit = {"limit": page_size} if style == "cursor" else {}
        pagination = dict(PAGINATION[style])
        if style != "cursor":
            pagination["page_size"] = page_size
        orders |= {"endpoint": f"/{style}", "pagination": pagination, "params": limit}
    body: dict[str, Any] = {
        "version": "1",
        "base_url": url,
        "auth": {"type": "bearer"} if token else {"type": "none"},
        "concurrency": concurrency,
        "streams": streams,
    }
    if rate is not None:
        body["rate_limit"] = {"requests_per_second": rate}
    return body


def setup(url: str, token: str | None, page_size: int, **options: Any) -> None:
    from rawquery_workers.errors import NotFoundError
    from rawquery_workers.registry import open_registry
    from rawquery_workers.spec.credentials import Credentials

    registry = open_registry()
    try:
        registry.get_connection(NAME)
    except NotFoundError:
        registry.create_connection(
            NAME, spec(url, page_size, token is not None, **options), Credentials(token=token), None
        )


def table_figures() -> dict[str, Any]:
    from rawquery_workers.sink import open_sink

    sink = open_sink()
    out: dict[str, Any] = {}
    for name in ("orders", "orders_line_items"):
        table = sink.catalog.load_table(f"{NAME}.{name}")
        snapshot = table.current_snapshot()
        summary = snapshot.summary if snapshot else None
        out[name] = {
            "rows": int(summary["total-records"]) if summary else 0,
            "files": int(summary["total-data-files"]) if summary else 0,
            "snapshots": len(table.metadata.snapshots),
        }
    return out


def run(
    url: str, token: str | None, page_size: int, profile: str | None, **options: Any
) -> dict[str, Any]:
    from rawquery_workers.registry.connections import plan_sync
    from rawquery_workers.runner.sync import run_sync

    setup(url, token, page_size, **options)
    from rawquery_workers.registry import open_registry

    registry = open_registry()
    sync_id, _ = plan_sync(registry, NAME)
    started, cpu = time.perf_counter(), time.process_time()
    if profile:
        import pyinstrument

        with pyinstrument.Profiler(interval=0.002) as profiler:
            outcome = run_sync(sync_id, registry=registry)
        Path(profile).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    else:
        outcome = run_sync(sync_id, registry=registry)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if not outcome.ok:
        raise SystemExit(f"sync failed: {[s.error for s in outcome.streams]}")
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rows": sum(s.rows for s in outcome.streams if s.name == "orders"),
        "tables": table_figures(),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--token", default=None)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--profile", default=None, help="write a pyinstrument profile here")
    parser.add_argument("--style", choices=STYLES, default="offset")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=None, help="rate_limit.requests_per_second")
    args = parser.parse_args()
    os.environ["RAWQUERY_HOME"] = args.home
    for name in ("RAWQUERY_CATALOG_URI", "RAWQUERY_WAREHOUSE", "RAWQUERY_REDIS_URL"):
        os.environ.pop(name, None)
    os.chdir(args.home if Path(args.home).exists() else Path(args.home).parent)
    options = {"style": args.style, "concurrency": args.concurrency, "rate": args.rate}
    figures = run(args.url, args.token, args.page_size, args.profile, **options)
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")


if __name__ == "__main__":
    main()
