"""Keeps the benchmark harness from rotting: the bench API and one small embedded sync
(not timed; asserts row counts only)."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from api import BenchApi  # noqa: E402
from baseline import httpx_json, urllib3_orjson  # noqa: E402


@pytest.fixture(scope="module")
def bench_api() -> BenchApi:
    with BenchApi(records=2_500, page_size=100, token="t") as api:
        yield api


def _get(url: str, token: str = "t") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_bench_api_pagination_styles(bench_api: BenchApi) -> None:
    status, _, body = _get(f"{bench_api.url}/offset?offset=2400&limit=100")
    page = orjson.loads(body)
    assert status == 200 and len(page["data"]) == 100 and page["total"] == 2_500
    record = page["data"][0]
    assert len(record) == 12 and isinstance(record["customer"], dict)
    assert 1 <= len(record["line_items"]) <= 3 and all(isinstance(t, str) for t in record["tags"])
    cursor = orjson.loads(_get(f"{bench_api.url}/cursor?limit=100")[2])
    assert cursor["next_cursor"] == "c100"
    last = orjson.loads(_get(f"{bench_api.url}/next?page=25")[2])
    assert last["next"] is None and len(last["data"]) == 100
    _, headers, _ = _get(f"{bench_api.url}/link?page=1")
    assert 'rel="next"' in headers["Link"]
    assert _get(f"{bench_api.url}/pages?page=1", token="wrong")[0] == 401


def test_baselines_read_every_record(bench_api: BenchApi) -> None:
    assert httpx_json(bench_api.url, 2_500, 100, "t")[2] == 2_500
    assert urllib3_orjson(bench_api.url, 2_500, 100, "t")[2] == 2_500


def test_enforced_rate_limit_answers_429_and_logs() -> None:
    with BenchApi(records=300, token=None, rate=1, burst=2) as api:
        statuses = [_get(f"{api.url}/offset?offset=0&limit=100")[0] for _ in range(4)]
        assert statuses.count(200) >= 2 and 429 in statuses
        assert len(api.stats()["log"]) == 4


def test_embedded_sync_first_and_second(bench_api: BenchApi, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    args = [sys.executable, str(BENCH / "embedded.py"), "--url", bench_api.url,
            "--home", str(home), "--token", "t"]  # fmt: skip
    for _ in range(2):  # a first sync, then the merge path
        done = subprocess.run(args, capture_output=True, text=True, check=True)
        figures = orjson.loads(done.stdout.strip().splitlines()[-1])
        assert figures["rows"] == 2_500
        assert figures["tables"]["orders"]["rows"] == 2_500
        assert figures["tables"]["orders_line_items"]["rows"] == sum(
            1 + i % 3 for i in range(1, 2_501)
        )
