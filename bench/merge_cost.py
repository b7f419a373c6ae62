"""Issue 21, part 4: what a merge of a few changed keys into a large table costs.

    .venv/bin/python bench/merge_cost.py [--records 1000000] [--changed 100]

One embedded sync lands `--records` orders (and their line items) from bench/api.py in a
fresh RAWQUERY_HOME; then `--changed` orders change at the API and an incremental sync
merges them, in turn:
- `recent`: the newest ids (orders change soon after they are placed),
- `scattered`: ids spread evenly over the whole range (the worst case for clustering),
first on the table as synced, then again (other ids) after `rq maintain`. Per merge: the sync's wall
time and, per table, the files the merge rewrote (of the live files), their rows and their
bytes (the merge snapshot's `deleted-data-files`, `deleted-records`, `removed-files-size`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from api import BenchApi  # noqa: E402
from embedded import NAME, spec  # noqa: E402

TABLES = ("orders", "orders_line_items")


def connection(url: str) -> dict[str, Any]:
    body = spec(url, token=False)
    orders = body["streams"][0]
    orders["cursor_field"] = "updated_at"
    orders["params"] = {"updated_since": "{{cursor}}"}
    return body


def sync() -> float:
    from rawquery_workers.registry import open_registry
    from rawquery_workers.registry.connections import plan_sync
    from rawquery_workers.runner.sync import run_sync

    registry = open_registry()
    sync_id, _ = plan_sync(registry, NAME)
    started = time.perf_counter()
    outcome = run_sync(sync_id, registry=registry)
    seconds = time.perf_counter() - started
    if not outcome.ok:
        raise SystemExit(f"sync failed: {[s.error for s in outcome.streams]}")
    return seconds


def head_figures() -> dict[str, dict[str, int]]:
    from rawquery_workers.sink import open_sink

    sink = open_sink()
    out = {}
    for name in TABLES:
        table = sink.catalog.load_table(f"{NAME}.{name}")
        head = table.current_snapshot()
        summary = head.summary.additional_properties if head and head.summary else {}

        def get(key: str, summary: dict[str, str] = summary) -> int:
            return int(summary.get(key, 0))

        out[name] = {
            "rows": get("total-records"),
            "live files": get("total-data-files"),
            "files rewritten": get("deleted-data-files"),
            "rows rewritten": get("deleted-records"),
            "bytes rewritten": get("removed-files-size"),
            "table bytes": get("total-files-size"),
        }
    return out


def maintain() -> float:
    from rawquery_workers.cli.app import main

    started = time.perf_counter()
    try:
        main(["maintain", NAME])
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    return time.perf_counter() - started


def changed_ids(kind: str, records: int, count: int, round: int) -> list[int]:
    """`count` ids of `kind`; another set in each round (keys not changed before)."""
    if kind == "recent":
        top = records - round * count
        return list(range(top - count + 1, top + 1))
    step = records // count
    return [1 + n * step + round * (step // 2) for n in range(count)]


def run(records: int, changed: int) -> list[dict[str, Any]]:
    from rawquery_workers.registry import open_registry
    from rawquery_workers.settings import reset_settings
    from rawquery_workers.spec.credentials import Credentials

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as home, BenchApi(records=records) as api:
        os.environ["RAWQUERY_HOME"] = home
        os.environ.pop("RAWQUERY_REDIS_URL", None)
        # one maintenance at a time, when asked: the automatic one would blur the figures
        os.environ["RAWQUERY_MAINTAIN_AFTER_FILES"] = "1000000"
        reset_settings()
        open_registry().create_connection(NAME, connection(api.url), Credentials(), None)
        first = sync()
        results.append({"step": f"first sync of {records:,}", "seconds": first,
                        "tables": head_figures()})  # fmt: skip
        for round, state in enumerate(("as synced", "after rq maintain")):
            if state != "as synced":
                seconds = maintain()
                results.append({"step": "rq maintain", "seconds": seconds,
                                "tables": head_figures()})  # fmt: skip
            for kind in ("recent", "scattered"):
                api.change(changed_ids(kind, records, changed, round))
                seconds = sync()
                results.append({"step": f"merge {changed} {kind} keys, {state}",
                                "seconds": seconds, "tables": head_figures()})  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--changed", type=int, default=100)
    args = parser.parse_args()
    for result in run(args.records, args.changed):
        print(f"{result['step']}: {result['seconds']:.2f} s")
        for name, figures in result["tables"].items():
            described = ", ".join(f"{k} {v:,}" for k, v in figures.items())
            print(f"    {name}: {described}")


if __name__ == "__main__":
    main()
