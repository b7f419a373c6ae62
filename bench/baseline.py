"""The raw-download baselines: fetch and JSON-parse every offset page, nothing else.

.venv/bin/python bench/baseline.py URL RECORDS [PAGE_SIZE]
"""

from __future__ import annotations

import json
import sys
import time


def httpx_json(
    url: str, records: int, page_size: int = 100, token: str | None = None
) -> tuple[float, float, int]:
    """httpx.Client + json.loads: (wall seconds, CPU seconds, records)."""
    import httpx

    got = 0
    started, cpu = time.perf_counter(), time.process_time()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(headers=headers) as client:
        offset = 0
        while True:
            response = client.get(f"{url}/offset", params={"offset": offset, "limit": page_size})
            rows = json.loads(response.content)["data"]
            got += len(rows)
            offset += len(rows)
            if len(rows) < page_size:
                break
    return time.perf_counter() - started, time.process_time() - cpu, got


def urllib3_orjson(
    url: str, records: int, page_size: int = 100, token: str | None = None
) -> tuple[float, float, int]:
    """urllib3.PoolManager + orjson.loads: the floor for fetch + parse in Python."""
    import orjson
    import urllib3

    got = 0
    started, cpu = time.perf_counter(), time.process_time()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib3.PoolManager(headers=headers) as pool:
        offset = 0
        while True:
            response = pool.request("GET", f"{url}/offset?offset={offset}&limit={page_size}")
            rows = orjson.loads(response.data)["data"]
            got += len(rows)
            offset += len(rows)
            if len(rows) < page_size:
                break
    return time.perf_counter() - started, time.process_time() - cpu, got


if __name__ == "__main__":
    base, count = sys.argv[1], int(sys.argv[2])
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    token = sys.argv[4] if len(sys.argv) > 4 else None
    for fn in (httpx_json, urllib3_orjson):
        seconds, cpu, rows = fn(base, count, size, token)
        print(f"{fn.__name__}: {seconds:.2f} s ({cpu:.2f} s CPU), {rows} records")
