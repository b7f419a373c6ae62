"""Issue 21, part 1: tables after 30 small incremental syncs, before and after `rq maintain`.

    .venv/bin/python bench/maintenance.py [--syncs 30]

The API is the fake of tests/e2e/test_maintenance.py (demo-shaped orders with line items,
3 new and 2 updated a sync; an append-only events stream), served on 127.0.0.1; every sync
and `rq maintain` run in this process on a fresh RAWQUERY_HOME (embedded defaults).
Prints, per table: live data files, snapshots, bytes of data and metadata files on disk.
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
sys.path[:0] = [str(HERE.parent)]

TABLES = ("orders", "orders_items", "events")


def rq(*args: str) -> None:
    from rawquery_workers.cli.app import main
    from rawquery_workers.settings import reset_settings

    reset_settings()
    try:
        main(list(args))
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"rq {' '.join(args)} exited {exc.code}") from None


def figures() -> dict[str, dict[str, int]]:
    from rawquery_workers.settings import get_settings, reset_settings
    from rawquery_workers.sink import open_sink

    reset_settings()
    sink = open_sink(get_settings())
    out = {}
    for name in TABLES:
        table = sink.catalog.load_table(f"shop.{name}")
        root = Path(table.location().removeprefix("file://"))
        out[name] = {
            "live files": len(table.inspect.files()),
            "snapshots": len(table.metadata.snapshots),
            "data bytes": sum(p.stat().st_size for p in root.rglob("*.parquet")),
            "metadata bytes": sum(
                p.stat().st_size for p in (root / "metadata").rglob("*") if p.is_file()
            ),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=30)
    args = parser.parse_args()
    from tests.e2e.test_maintenance import Shop, spec
    from tests.support.api_server import ApiServer

    with tempfile.TemporaryDirectory(prefix="rq-maintain-") as home, ApiServer() as server:
        os.environ.update(RAWQUERY_HOME=home, RAWQUERY_MAINTAIN_AFTER_FILES="0",
                          RAWQUERY_ORPHAN_GRACE_SECONDS="0")  # fmt: skip
        for name in ("RAWQUERY_CATALOG_URI", "RAWQUERY_WAREHOUSE", "RAWQUERY_REDIS_URL"):
            os.environ.pop(name, None)
        shop = Shop()
        shop.serve(server)
        spec_path = Path(home) / "spec.json"
        import orjson

        spec_path.write_bytes(orjson.dumps(spec(server)))
        rq("connect", "shop", "--spec", str(spec_path))
        for _ in range(args.syncs):
            rq("connections", "sync", "shop")
            shop.change()
        rq("connections", "sync", "shop")
        before = figures()
        started = time.perf_counter()
        rq("maintain", "shop")
        took = time.perf_counter() - started
        after = figures()
    report(args, before, after, took)


def report(args: Any, before: dict, after: dict, took: float) -> None:
    print(f"\n{args.syncs + 1} syncs, then `rq maintain shop` ({took:.2f} s):\n")
    print("| table | live files | snapshots | data bytes | metadata bytes |")
    print("|---|---|---|---|---|")
    for name in TABLES:
        b, a = before[name], after[name]
        cells = [f"{b[k]:,} -> {a[k]:,}" for k in ("live files", "snapshots", "data bytes",
                                                    "metadata bytes")]  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
