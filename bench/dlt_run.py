"""dlt's rest_api source on the bench API into dlt's Iceberg filesystem destination.

    bench/.venv-dlt/bin/python bench/dlt_run.py --url URL --dir DIR [--token T]

Runs in its own venv (bench/.venv-dlt: pip install "dlt[filesystem,pyiceberg]"); prints
JSON: wall seconds of `pipeline.run` (extract + normalize + load), rows and peak RSS.
dlt's own normalisation applies: `customer` flattened to customer__*, `line_items` and
`tags` into child tables; write disposition append (dlt's merge into Iceberg goes through
pyiceberg's upsert, unfinished after minutes at this size: issue 6).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--token", default=None)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ["DLT_TELEMETRY"] = "0"
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"

    import dlt
    from dlt.sources.rest_api import rest_api_source

    client: dict = {"base_url": args.url}
    if args.token:
        client["auth"] = {"type": "bearer", "token": args.token}
    paginator = {"type": "offset", "limit": args.page_size, "offset_param": "offset",
                 "limit_param": "limit", "total_path": "total"}  # fmt: skip
    source = rest_api_source(
        {
            "client": client,
            "resource_defaults": {"primary_key": "id", "write_disposition": "append"},
            "resources": [
                {
                    "name": "orders",
                    "endpoint": {
                        "path": "offset",
                        "data_selector": "data",
                        "paginator": paginator,
                    },  # fmt: skip
                }
            ],
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
    print(json.dumps({"seconds": seconds, "rows": rows.get("orders", 0), "tables": rows,
                      "rss_mb": rss, "dlt": dlt.__version__}))  # fmt: skip


if __name__ == "__main__":
    main()
