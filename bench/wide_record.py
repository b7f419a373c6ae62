"""Wide records (issue 18): one page holding one record of N fields, synced into Iceberg.

    .venv/bin/python bench/wide_record.py [--fields 5000 10000 50000] [--runs 3]

Side by side per N, medians of `--runs` (min-max), each measurement in a fresh process:
- floor: what any tool does at least: parse the body (orjson), build an Arrow table
  (`pa.Table.from_pylist`) and write it as one Parquet file;
- rq: `rq connect` + `rq connections sync` of the same body from a local HTTP server
  (the sync's wall time, measured around the `rq connections sync` process), and that
  process's peak RSS.
No peer runs here: dlt's and Airbyte's bench venvs are optional (bench/README.md) and
neither was installed when these figures were taken.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RQ = str(Path(sys.executable).parent / "rq")
FLOOR = """
import sys, time, orjson, pyarrow as pa, pyarrow.parquet as pq
body = open(sys.argv[1], "rb").read()
start = time.perf_counter()
table = pa.Table.from_pylist(orjson.loads(body)["data"])
pq.write_table(table, sys.argv[2])
print(time.perf_counter() - start)
"""

MEASURED = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True)
seconds = time.perf_counter() - start
if done.returncode:
    sys.exit(done.stdout.decode() + done.stderr.decode())
print(seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def body(fields: int) -> bytes:
    record = {"id": 1, **{f"field_{i}": i for i in range(fields)}}
    return json.dumps({"data": [record]}).encode()


def serve(data: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def floor(data: bytes, folder: Path) -> float:
    source = folder / "body.json"
    source.write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-c", FLOOR, str(source), str(folder / "floor.parquet")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout)


def rq_sync(url: str, folder: Path) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAWQUERY_")}
    env["RAWQUERY_HOME"] = str(folder / "home")
    spec = folder / "spec.json"
    spec.write_text(json.dumps({
        "version": "1", "base_url": url, "auth": {"type": "none"},
        "streams": [{"name": "wide", "endpoint": "/wide", "data_path": "data",
                     "primary_key": ["id"]}],
    }))  # fmt: skip
    subprocess.run([RQ, "connect", "w", "--spec", str(spec)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    # a wrapper process whose only child is the sync: its children's peak RSS is the sync's
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, RQ, "connections", "sync", "w"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"sync failed:\n{done.stdout}\n{done.stderr}")
    seconds, peak_kb = map(float, done.stdout.split())
    return seconds, peak_kb / 1024


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fields", type=int, nargs="+", default=[5000, 10000, 50000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("| fields | floor s | rq sync s | rq / floor | rq peak RSS MB |")
    print("|---|---|---|---|---|")
    for fields in args.fields:
        data = body(fields)
        server = serve(data)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        floors, syncs, peaks = [], [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                floors.append(floor(data, Path(tmp)))
                seconds, peak = rq_sync(url, Path(tmp))
                syncs.append(seconds)
                peaks.append(peak)
        server.shutdown()
        ratio = statistics.median(syncs) / statistics.median(floors)
        print(
            f"| {fields} | {spread(floors)} | {spread(syncs)} | {ratio:.0f} x | "
            f"{statistics.median(peaks):.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
