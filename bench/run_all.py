"""Every benchmark of issue 6, side by side in one run; writes bench/README.md.

    make bench                                   # = .venv/bin/python bench/run_all.py
    .venv/bin/python bench/run_all.py --quick    # smoke run: fewer records and runs

Each figure is the median of `--runs` runs (default 3) with min-max. The bench API
(bench/api.py) runs in its own process; each sync runs in a child process
(bench/embedded.py) so its peak RSS is its own; dlt runs from bench/.venv-dlt.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api import BenchApi  # noqa: E402
from baseline import httpx_json, urllib3_orjson  # noqa: E402
from distributed import summary as distributed_summary  # noqa: E402

TOKEN = "bench-token"
PY = sys.executable
DLT_PY = HERE / ".venv-dlt" / "bin" / "python"
AIRBYTE_PY = HERE / ".venv-airbyte" / "bin" / "python"


def spread(values: list[float], unit: str = "s", digits: int = 2) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.{digits}f} {unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def child(args: list[str], python: str = PY) -> dict[str, Any]:
    done = subprocess.run([python, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed:\n{done.stderr[-2000:]}")
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def embedded(url: str, home: str) -> dict[str, Any]:
    return child([str(HERE / "embedded.py"), "--url", url, "--home", home, "--token", TOKEN])


def bench_sync(api: BenchApi, records: int, runs: int, out: dict[str, Any]) -> None:
    raw: dict[str, list[float]] = {"httpx": [], "urllib3": [], "httpx_cpu": [], "urllib3_cpu": []}
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    dlt: list[dict[str, Any]] = []
    airbyte: list[dict[str, Any]] = []
    for run in range(runs):
        print(f"run {run + 1}/{runs}", flush=True)
        for name, fn in (("httpx", httpx_json), ("urllib3", urllib3_orjson)):
            seconds, cpu, got = fn(api.url, records, 100, TOKEN)
            assert got == records, (name, got)
            raw[name].append(seconds)
            raw[f"{name}_cpu"].append(cpu)
        with tempfile.TemporaryDirectory(prefix="rq-bench-") as home:
            first.append(embedded(api.url, home))
            second.append(embedded(api.url, home))
        if DLT_PY.exists() and not out["skip_dlt"]:
            with tempfile.TemporaryDirectory(prefix="dlt-bench-") as folder:
                dlt.append(child([str(HERE / "dlt_run.py"), "--url", api.url, "--dir", folder,
                                  "--token", TOKEN], python=str(DLT_PY)))  # fmt: skip
        if AIRBYTE_PY.exists() and not out["skip_airbyte"]:
            read = child([str(HERE / "airbyte_run.py"), "--url", api.url, "--token", TOKEN],
                         python=str(AIRBYTE_PY))  # fmt: skip
            assert read["records"] == records, read
            airbyte.append(read)
    out.update(raw=raw, first=first, second=second, dlt=dlt, airbyte=airbyte)


def bench_rss(sizes: list[int], runs: int) -> dict[int, list[dict[str, Any]]]:
    result: dict[int, list[dict[str, Any]]] = {}
    for size in sizes:
        print(f"peak RSS at {size:,} records", flush=True)
        with BenchApi(records=size, token=TOKEN) as api:
            result[size] = []
            for _ in range(runs):
                with tempfile.TemporaryDirectory(prefix="rq-bench-") as home:
                    result[size].append(embedded(api.url, home))
    return result


def bench_limiter(seconds: float) -> str:
    print("limiter precision", flush=True)
    args = [str(HERE / "limiter_precision.py"), "--processes", "4", "--rate", "10",
            "--seconds", str(seconds)]  # fmt: skip
    done = subprocess.run([PY, *args], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip()


def bench_distributed(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.skip_distributed:
        return None
    print("distributed (d)/(g)", flush=True)
    extra = ["--records", str(args.records), "--runs", str(args.runs)]
    extra += ["--pages", "5", "--latency-runs", "5"] if args.quick else []
    return child([str(HERE / "distributed.py"), *extra])


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    names = ["httpx", "urllib3", "orjson", "pyarrow", "pyiceberg", "celery"]
    versions = ", ".join(f"{n} {metadata.version(n)}" for n in names)
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs (nproc), {mem:.1f} GiB RAM, {platform.platform()}, "
        f"Python {platform.python_version()}; {versions}; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )


def report(
    args: argparse.Namespace, sync: dict[str, Any], rss: dict, limiter: str, dist: dict | None
) -> str:
    n = args.records
    raw, first, second, dlt = sync["raw"], sync["first"], sync["second"], sync["dlt"]
    airbyte = sync["airbyte"]
    httpx_med = statistics.median(raw["httpx"])
    rate = [n / r["seconds"] for r in first]
    lines = [
        f"- command: `{' '.join(['.venv/bin/python bench/run_all.py', *sys.argv[1:]])}`",
        f"- machine: {machine()}",
        f"- {n:,} records, page size 100, offset pagination, {args.runs} runs each; "
        "figures are median (min-max); CPU = the client process's user+sys seconds",
        "",
        "| what | wall | CPU | records/s | vs httpx (wall) | peak RSS |",
        "|---|---|---|---|---|---|",
        f"| (a) httpx + json, download only | {spread(raw['httpx'])} | "
        f"{spread(raw['httpx_cpu'])} | {n / httpx_med:,.0f} | 1.00 x | - |",
        f"| (a) urllib3 + orjson, download only | {spread(raw['urllib3'])} | "
        f"{spread(raw['urllib3_cpu'])} | {n / statistics.median(raw['urllib3']):,.0f} | "
        f"{statistics.median(raw['urllib3']) / httpx_med:.2f} x | - |",
    ]

    def row(label: str, runs: list[dict[str, Any]], cpu: bool = False) -> str:
        secs = [r["seconds"] for r in runs]
        used = spread([r["cpu"] for r in runs]) if cpu else "-"
        return (f"| {label} | {spread(secs)} | {used} | {n / statistics.median(secs):,.0f} | "
                f"{statistics.median(secs) / httpx_med:.2f} x | "
                f"{spread([r['rss_mb'] for r in runs], 'MB', 0)} |")  # fmt: skip

    def times_faster(runs: list[dict[str, Any]]) -> float:
        """rawquery's first sync in records/s over that of `runs`."""
        return statistics.median(rate) / (n / statistics.median(r["seconds"] for r in runs))

    lines.append(row("(b) rawquery embedded, first sync", first, cpu=True))
    lines.append(row("(b) rawquery embedded, second sync (merge)", second, cpu=True))
    if airbyte:
        lines.append(row(f"(c') Airbyte CDK {airbyte[0]['airbyte_cdk']} declarative source, "
                         "read only (no destination)", airbyte))  # fmt: skip
    if dlt:
        lines.append(row(f"(c) dlt {dlt[0]['dlt']} rest_api -> Iceberg (append)", dlt))
        lines.append(f"\nrawquery first sync vs dlt: {times_faster(dlt):.1f} x the records/s "
                     "(target >= 5 x)")  # fmt: skip
    else:
        lines.append("\n(c) dlt: not run (bench/.venv-dlt missing or --skip-dlt)")
    if airbyte:
        lines.append(f"\nrawquery first sync (into Iceberg) vs Airbyte reading alone: "
                     f"{times_faster(airbyte):.1f} x the records/s")  # fmt: skip
    else:
        lines.append("\n(c') Airbyte: not run (bench/.venv-airbyte missing or --skip-airbyte)")
    tables = first[-1]["tables"], second[-1]["tables"]
    lines.append(f"\nIceberg after the first / second sync (last run): {tables[0]} / {tables[1]}")
    lines += ["", "(e) peak RSS of one embedded sync (child process ru_maxrss):", ""]
    for size, rows in rss.items():
        files = {name: t["files"] for name, t in rows[-1]["tables"].items()}
        commits = {name: t["snapshots"] for name, t in rows[-1]["tables"].items()}
        lines.append(f"- {size:,} records: {spread([r['rss_mb'] for r in rows], 'MB', 0)}, "
                     f"wall {spread([r['seconds'] for r in rows])}; data files per table "
                     f"{files}, snapshots per table {commits}")  # fmt: skip
    if len(rss) == 2:
        small, big = (statistics.median(r["rss_mb"] for r in rows) for rows in rss.values())
        lines.append(f"- ratio {big / small:.2f} x (target <= 1.2 x, and <= 300 MB at 1M)")
    lines += ["", "(f) limiter precision (bench/limiter_precision.py, 4 processes):", "",
              "```", limiter, "```"]  # fmt: skip
    if dist is None:
        lines += ["", "(d)/(g) distributed: not run (--skip-distributed)"]
    else:
        lines += distributed_summary(dist)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k records, RSS at 10k/100k")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-dlt", action="store_true")
    parser.add_argument("--skip-airbyte", action="store_true")
    parser.add_argument("--skip-distributed", action="store_true")
    parser.add_argument("--no-readme", action="store_true", help="print only")
    args = parser.parse_args()
    args.records = 20_000 if args.quick else 200_000
    sizes = [10_000, 100_000] if args.quick else [100_000, 1_000_000]
    started = time.monotonic()
    sync: dict[str, Any] = {"skip_dlt": args.skip_dlt, "skip_airbyte": args.skip_airbyte}
    with BenchApi(records=args.records, token=TOKEN) as api:
        bench_sync(api, args.records, args.runs, sync)
    rss = bench_rss(sizes, args.runs)
    limiter = bench_limiter(5 if args.quick else 20)
    dist = bench_distributed(args)
    text = report(args, sync, rss, limiter, dist)
    print(text)
    print(f"\n(all benchmarks: {time.monotonic() - started:.0f} s)")
    if not args.no_readme:
        readme = HERE / "README.md"
        head = readme.read_text().split("<!-- figures -->")[0] if readme.exists() else ""
        readme.write_text(head + "<!-- figures -->\n" + text + "\n")


if __name__ == "__main__":
    main()
