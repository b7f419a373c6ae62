"""dlt's rest_api source on the bench API into dlt's Iceberg filesystem destination.

    bench/.venv-dlt/bin/python bench/dlt_run.py --url URL --dir DIR [--token T]
        [--style offset|pages|cursor|children] [--page-size 100]

Runs in its own venv (bench/.venv-dlt: pip install "dlt[filesystem,pyiceberg]"); prints
JSON: wall seconds of `pipeline.run` (extract + normalize + load), rows and peak RSS.
dlt's own normalisation applies: `customer` flattened to customer__*, `line_items` and
`tags` into child tables; write disposition append (dlt's merge into Iceberg goes through
pyiceberg's upsert, unfinished after minutes at this size: issue 6).

`--style` picks the bench API's pagination and dlt's paginator for it, as a user of dlt
configures it:
    offset    /offset, paginator "offset" (offset/limit, stops at `total`; the default)
    pages     /pages, paginator "page_number" (base_page 1, `per_page` sent as a param, no
              total: it stops at the first empty page)
    cursor    /cursor, paginator "cursor" (cursor_path "next_cursor", cursor_param "cursor")
    children  /parents (one page), then /parents/ID/orders for each parent: a child
              resource whose `id` param is `resolve`d from the parents (one page each)
"rows" are the `orders` table's rows (for children: the child records only; the parents
are loaded too, as dlt does by default, and are in "tables").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

STYLES = ("offset", "pages", "cursor", "children")


def resources(style: str, page_size: int) -> list[dict]:
    """The rest_api resources for one style of the bench API; the records are `orders`."""
    if style == "children":
        parents = {"name": "parents", "endpoint": {"path": "parents", "data_selector": "data",
                                                   "paginator": "single_page"}}  # fmt: skip
        orders = {
            "name": "orders",
            "endpoint": {
                "path": "parents/{id}/orders",
                "data_selector": "data",
                "params": {"id": {"type": "resolve", "resource": "parents", "field": "id"}},
                "paginator": "single_page",
            },
        }
        return [parents, orders]
    if style == "pages":
        path, params = "pages", {"per_page": page_size}
        paginator = {"type": "page_number", "base_page": 1, "page_param": "page",
                     "total_path": None}  # fmt: skip
    elif style == "cursor":
        path, params = "cursor", {"limit": page_size}
        paginator = {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"}
    else:
        path, params = "offset", {}
        paginator = {"type": "offset", "limit": page_size, "offset_param": "offset",
                     "limit_param": "limit", "total_path": "total"}  # fmt: skip
    endpoint = {"path": path, "data_selector": "data", "paginator": paginator}
    if params:
        endpoint["params"] = params
    return [{"name": "orders", "endpoint": endpoint}]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--token", default=None)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--style", choices=STYLES, default="offset")
    args = parser.parse_args()
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ["DLT_TELEMETRY"] = "0"
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"

    import dlt
    from dlt.sources.rest_api import rest_api_source

    client: dict = {"base_url": args.url}
    if args.token:
        client["auth"] = {"type": "bearer", "token": args.token}
    source = rest_api_source(
        {
            "client": client,
            "resource_defaults": {"primary_key": "id", "write_disposition": "append"},
            "resources": resources(args.style, args.page_size),
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        pipelines_dir=os.path.join(args.dir, "pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=f"file://{args.dir}/lake"),
        dataset_name="bench",
    )
    started = time.perf_counter()
    pipeline.run(source, table_format="iceberg")
    seconds = time.perf_counter() - started
    rows = pipeline.last_trace.last_normalize_info.row_counts
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"style": args.style, "seconds": seconds, "rows": rows.get("orders", 0),
                      "tables": rows, "rss_mb": rss, "dlt": dlt.__version__}))  # fmt: skip


if __name__ == "__main__":
    main()
