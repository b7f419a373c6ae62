"""Issue 20: syncs against an API that answers late, beside the network's floors and the peers.

    .venv/bin/python bench/latency.py [--runs 3] [--records 20000] [--only offset-50,...]

Each regime is the bench API (bench/api.py) with `--latency` added to every answer, and in
the same run, `--runs` times each (median and min-max):

- floor, sequential: httpx fetch-and-parse, one request at a time (what a one-at-a-time
  client cannot beat);
- floor, 8 in flight: the same pages, 8 requests at once, with the page count known in
  advance (what `concurrency: 8` cannot beat); none for cursor chains;
- rawquery: an embedded sync into Iceberg with `concurrency: 8` (and 1 beside it where
  the regime says so), in a child process (bench/embedded.py);
- dlt's rest_api into Iceberg and Airbyte's declarative source reading alone, from their
  own venvs (bench/dlt_run.py, bench/airbyte_run.py; skipped when a venv is missing).

The rate-limited regime is the API enforcing 20 requests/s (429 beyond it) at 50 ms: the
figures are the achieved rate (requests over the span from the first to the last) and the
429s, for one embedded sync and for two Celery workers sharing the Redis budget (one
connection, two streams).

Prints the figures, and rewrites the "Latency regimes" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api import BenchApi  # noqa: E402
from run_all import AIRBYTE_PY, DLT_PY, child, machine, spread  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAGE = 100
IN_FLIGHT = 8
PARENTS = 200
# name: (style, latency seconds, also run rawquery one request at a time)
REGIMES: dict[str, tuple[str, float, bool]] = {
    "offset-50": ("offset", 0.05, True),
    "offset-150": ("offset", 0.15, False),
    "pages-50": ("pages", 0.05, False),
    "cursor-50": ("cursor", 0.05, False),
    "cursor-150": ("cursor", 0.15, False),
    "children-50": ("children", 0.05, False),
}


# --- the floors ----------------------------------------------------------------------------


def _get(client: httpx.Client, url: str) -> list[Any]:
    response = client.get(url)
    response.raise_for_status()
    data: list[Any] = orjson.loads(response.content)["data"]
    return data


def floor_sequential(url: str, style: str, records: int) -> tuple[float, int]:
    """One request at a time: (seconds, records)."""
    got = 0
    started = time.perf_counter()
    with httpx.Client(headers=AUTH) as client:
        if style == "children":
            parents = _get(client, f"{url}/parents")
            got = sum(len(_get(client, f"{url}/parents/{p['id']}/orders")) for p in parents)
        elif style == "cursor":
            cursor: str | None = None
            while True:
                query = f"?limit={PAGE}" + (f"&cursor={cursor}" if cursor else "")
                response = client.get(f"{url}/cursor{query}")
                body = orjson.loads(response.content)
                got += len(body["data"])
                cursor = body["next_cursor"]
                if not cursor:
                    break
        else:
            n = 0
            while True:
                page = _get(client, _numbered(url, style, n))
                got, n = got + len(page), n + 1
                if len(page) < PAGE:
                    break
    return time.perf_counter() - started, got


def floor_in_flight(url: str, style: str, records: int) -> tuple[float, int]:
    """The same pages `IN_FLIGHT` at once, their count known: (seconds, records)."""
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=IN_FLIGHT)
    with httpx.Client(headers=AUTH, limits=limits) as client:
        if style == "children":
            parents = _get(client, f"{url}/parents")
            urls = [f"{url}/parents/{p['id']}/orders" for p in parents]
        else:
            urls = [_numbered(url, style, n) for n in range(records // PAGE + 1)]
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            got = sum(len(page) for page in pool.map(lambda u: _get(client, u), urls))
    return time.perf_counter() - started, got


def _numbered(url: str, style: str, n: int) -> str:
    if style == "offset":
        return f"{url}/offset?offset={n * PAGE}&limit={PAGE}"
    return f"{url}/pages?page={n + 1}&per_page={PAGE}"


# --- the tools -----------------------------------------------------------------------------


def rawquery(url: str, style: str, concurrency: int, rate: float | None = None) -> dict[str, Any]:
    args = [str(HERE / "embedded.py"), "--url", url, "--token", TOKEN, "--style", style,
            "--concurrency", str(concurrency)]  # fmt: skip
    args += ["--rate", str(rate)] if rate else []
    with tempfile.TemporaryDirectory(prefix="rq-bench-") as home:
        return child([*args, "--home", home])


def dlt(url: str, style: str) -> dict[str, Any] | None:
    if not DLT_PY.exists():
        return None
    with tempfile.TemporaryDirectory(prefix="dlt-bench-") as folder:
        args = [str(HERE / "dlt_run.py"), "--url", url, "--dir", folder, "--token", TOKEN,
                "--style", style]  # fmt: skip
        return child(args, python=str(DLT_PY))


def airbyte(url: str, style: str) -> dict[str, Any] | None:
    if not AIRBYTE_PY.exists():
        return None
    args = [str(HERE / "airbyte_run.py"), "--url", url, "--token", TOKEN, "--style", style]
    return child(args, python=str(AIRBYTE_PY))


def regime(name: str, records: int, runs: int) -> dict[str, list[float]]:
    """Every contender's wall seconds in one regime, `runs` each, interleaved."""
    style, latency, one_at_a_time = REGIMES[name]
    parents = PARENTS if style == "children" else 0
    out: dict[str, list[float]] = {}

    def add(label: str, seconds: float, got: int) -> None:
        if got != records:
            raise RuntimeError(f"{name}: {label} read {got} records, not {records}")
        out.setdefault(label, []).append(seconds)

    contenders: list[tuple[str, Callable[[str], tuple[float, int] | None]]] = [
        ("floor: httpx, sequential", lambda u: floor_sequential(u, style, records)),
    ]
    if style != "cursor":
        contenders.append(
            (f"floor: httpx, {IN_FLIGHT} in flight", lambda u: floor_in_flight(u, style, records))
        )
    contenders.append(
        (f"rawquery, concurrency {IN_FLIGHT}", lambda u: _timed(rawquery(u, style, IN_FLIGHT)))
    )
    if one_at_a_time:
        contenders.append(("rawquery, concurrency 1", lambda u: _timed(rawquery(u, style, 1))))
    contenders.append(("dlt rest_api -> Iceberg", lambda u: _timed(dlt(u, style), "rows")))
    contenders.append(
        ("Airbyte declarative, read only", lambda u: _timed(airbyte(u, style), "records"))
    )
    with BenchApi(records=records, token=TOKEN, latency=latency, parents=parents) as api:
        for run in range(runs):
            for label, measure in contenders:
                print(f"{name} run {run + 1}/{runs}: {label}", file=sys.stderr, flush=True)
                figures = measure(api.url)
                if figures is not None:
                    add(label, *figures)
    return out


def _timed(figures: dict[str, Any] | None, count: str = "rows") -> tuple[float, int] | None:
    return None if figures is None else (figures["seconds"], figures[count])


# --- rate limited --------------------------------------------------------------------------


def rate_limited(records: int, runs: int, rps: float = 20.0) -> dict[str, list[dict[str, float]]]:
    """Achieved rate and 429s under an API enforcing `rps`, 1 process and 2 workers."""
    from tests.support.redis_server import RedisServer

    out: dict[str, list[dict[str, float]]] = {"embedded": [], "2 workers": []}
    # one Redis for every run: the Celery app of this process keeps the first URL it sees
    with (
        BenchApi(records=records, token=TOKEN, latency=0.05, rate=rps) as api,
        RedisServer() as redis,
    ):
        for run in range(runs):
            print(f"rate-limited run {run + 1}/{runs}: embedded", file=sys.stderr, flush=True)
            api.reset()
            rawquery(api.url, "offset", IN_FLIGHT, rps)
            out["embedded"].append(_achieved(api.stats()))
            print(f"rate-limited run {run + 1}/{runs}: 2 workers", file=sys.stderr, flush=True)
            api.reset()
            _two_workers(api, rps, redis)
            out["2 workers"].append(_achieved(api.stats()))
    return out


def _achieved(stats: dict[str, Any]) -> dict[str, float]:
    log = stats["log"]
    times = [t for t, _ in log]
    span = max(times) - min(times)
    return {"rate": (len(log) - 1) / span if span else 0.0, "requests": len(log),
            "429": sum(1 for _, status in log if status == 429)}  # fmt: skip


def _two_workers(api: BenchApi, rps: float, redis: Any) -> None:
    from distributed import cluster
    from embedded import spec

    with cluster(redis, 2) as c:
        body = spec(api.url, style="offset", concurrency=IN_FLIGHT, rate=rps)
        second = spec(api.url, style="pages", concurrency=IN_FLIGHT)["streams"][0]
        body["streams"].append({**second, "name": "orders_by_page"})
        c.connect("limited", body)
        c.wait([c.enqueue_here("limited")])


# --- report --------------------------------------------------------------------------------


def report(args: argparse.Namespace, regimes: dict[str, dict[str, list[float]]],
           limited: dict[str, list[dict[str, float]]] | None) -> str:  # fmt: skip
    lines = [
        f"- command: `{' '.join(['.venv/bin/python bench/latency.py', *sys.argv[1:]])}`",
        f"- machine: {machine()}",
        f"- {args.records:,} records, page size {PAGE} ({PARENTS} parents for children), "
        f"{args.runs} runs each; wall seconds, median (min-max); the ratio is to the "
        f"{IN_FLIGHT}-in-flight floor (the sequential one for cursor chains)",
        "",
    ]
    for name, figures in regimes.items():
        style, latency, _ = REGIMES[name]
        floor_label = next((k for k in figures if "in flight" in k), "floor: httpx, sequential")
        floor = statistics.median(figures[floor_label])
        lines += [f"**{style}, {latency * 1000:.0f} ms**", "", "| | wall | vs floor |",
                  "|---|---|---|"]  # fmt: skip
        for label, values in figures.items():
            lines.append(f"| {label} | {spread(values)} | "
                         f"{statistics.median(values) / floor:.2f} x |")  # fmt: skip
        lines.append("")
    if limited:
        lines += ["**rate-limited: the API enforces 20 requests/s (429 beyond), 50 ms**", "",
                  "| | achieved rate | 429s | requests |", "|---|---|---|---|"]  # fmt: skip
        for label, values in limited.items():
            rates = [v["rate"] for v in values]
            lines.append(f"| {label} | {spread(rates, 'req/s', 1)} | "
                         f"{max(v['429'] for v in values):.0f} (worst run) | "
                         f"{statistics.median(v['requests'] for v in values):.0f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--only", default="", help="comma list of regimes (and 'limited')")
    parser.add_argument("--no-readme", action="store_true", help="print only")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    started = time.monotonic()
    regimes: dict[str, dict[str, list[float]]] = {}
    for name in REGIMES:
        if not only or name in only:
            regimes[name] = regime(name, args.records, args.runs)
            print(
                orjson.dumps({name: regimes[name]}).decode(), flush=True
            )  # kept if a later part fails
    limited = rate_limited(args.records, args.runs) if not only or "limited" in only else None
    text = report(args, regimes, limited)
    print(text)
    print(f"\n(latency benchmarks: {time.monotonic() - started:.0f} s)")
    if not args.no_readme and not only:
        readme = HERE / "README.md"
        content = readme.read_text()
        head, marker, tail = content.partition("<!-- latency -->")
        if marker:
            rest = tail.split("<!-- /latency -->", 1)
            content = (
                head
                + marker
                + "\n"
                + text
                + "\n<!-- /latency -->"
                + (rest[1] if len(rest) > 1 else "")
            )
        else:  # before run_all.py's figures, which it rewrites to the end of the file
            section = "## Latency regimes (issue 20)\n\n<!-- latency -->\n" + text
            section += "\n<!-- /latency -->\n\n"
            before, figures, after = content.partition("<!-- figures -->")
            content = before + section + figures + after
        readme.write_text(content)


if __name__ == "__main__":
    main()
