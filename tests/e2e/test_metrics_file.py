"""`rq connections sync --metrics-file`: an embedded sync of a small API writes its metrics
in node_exporter's textfile format, with the numbers the API saw."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import Cli
from tests.support.api_server import ApiServer, RecordedRequest, Reply

RECORDS = [{"id": n, "name": f"item {n}"} for n in range(1, 26)]  # pages of 10, 10, 5


def items_api(server: ApiServer, fail_with: int | None = None) -> None:
    """Offset pages of 10; the first request of page 2 gets a 429 (retried), or every
    request gets `fail_with`."""
    throttled: set[int] = set()

    def listing(request: RecordedRequest) -> Reply:
        if fail_with is not None:
            return Reply({"error": "down"}, fail_with)
        offset = int(request.params.get("offset", 0))
        if offset == 10 and offset not in throttled:
            throttled.add(offset)
            return Reply({"error": "slow down"}, 429, headers={"Retry-After": "0"})
        return Reply({"data": RECORDS[offset : offset + 10]})

    server.route("/items", listing)


def spec(server: ApiServer) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "none"},
        # A rate limit that makes requests wait; fast retries.
        "rate_limit": {"requests_per_second": 40, "burst": 1, "backoff_base": 0.01},
        "streams": [
            {
                "name": "items",
                "endpoint": "/items",
                "data_path": "data",
                "primary_key": ["id"],
                "pagination": {"type": "offset", "page_size": 10},
            }
        ],
    }


def samples(path: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_an_embedded_sync_writes_its_metrics_file(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer, tmp_path: Path
) -> None:
    items_api(api_server)
    assert cli("connect", "mf_shop", "--spec", str(write_spec(spec(api_server)))).code == 0
    target = tmp_path / "textfile" / "rawquery_mf_shop.prom"
    target.parent.mkdir()

    done = cli("connections", "sync", "mf_shop", "--metrics-file", str(target))

    assert done.code == 0, done.out + done.err
    found = samples(target)
    s = {"connection": "mf_shop", "stream": "items"}
    served = api_server.requests_to("/items")
    assert len(served) == 4  # pages of 10, 10 and 5 (short: the last), and 1 throttled
    assert value(found, "rawquery_requests_total", **s, status="200") == 3
    assert value(found, "rawquery_requests_total", **s, status="429") == 1
    assert value(found, "rawquery_retries_total", **s) == 1
    assert value(found, "rawquery_pages_total", **s) == 3
    assert value(found, "rawquery_records_fetched_total", **s) == 25
    assert value(found, "rawquery_rows_committed_total", **s) == 25
    assert (value(found, "rawquery_rate_limit_wait_seconds_total", **s) or 0) > 0
    ended = {**s, "status": "succeeded"}
    assert value(found, "rawquery_stream_duration_seconds_count", **ended) == 1
    synced = {"connection": "mf_shop", "status": "succeeded"}
    assert value(found, "rawquery_sync_duration_seconds_count", **synced) == 1
    since = value(found, "rawquery_seconds_since_last_success", **s)
    assert since is not None and 0 <= since < 120
    assert all(dict(labels).get("connection") == "mf_shop" for _, labels in found)
    assert list(target.parent.iterdir()) == [target]  # written whole: no temporary left


def test_a_failed_sync_still_writes_its_metrics_file(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer, tmp_path: Path
) -> None:
    items_api(api_server, fail_with=403)
    assert cli("connect", "mf_down", "--spec", str(write_spec(spec(api_server)))).code == 0
    target = tmp_path / "down.prom"

    done = cli("connections", "sync", "mf_down", "--metrics-file", str(target))

    assert done.code == 1
    found = samples(target)
    s = {"connection": "mf_down", "stream": "items"}
    assert value(found, "rawquery_requests_total", **s, status="403") == 1
    assert value(found, "rawquery_stream_duration_seconds_count", **s, status="failed") == 1
    assert value(found, "rawquery_seconds_since_last_success", **s) is None  # never succeeded


@pytest.mark.parametrize(
    ("args", "env", "why"),
    [
        (["--no-wait"], {}, "needs --wait"),
        ([], {"RAWQUERY_REDIS_URL": "redis://127.0.0.1:1/0"}, "runs on the workers"),
    ],
)
def test_a_metrics_file_is_refused_where_this_process_does_not_run_the_sync(
    cli: Cli,
    write_spec: Callable[..., Path],
    api_server: ApiServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    why: str,
) -> None:
    items_api(api_server)
    assert cli("connect", "mf_no", "--spec", str(write_spec(spec(api_server)))).code == 0
    for key, setting in env.items():
        monkeypatch.setenv(key, setting)
    target = tmp_path / "no.prom"

    done = cli("connections", "sync", "mf_no", "--metrics-file", str(target), *args)

    assert done.code == 2
    assert "--metrics-file" in done.err and why in done.err
    assert not target.exists() and api_server.requests_to("/items") == []


def test_an_unwritable_metrics_file_is_an_error_that_names_it(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer, tmp_path: Path
) -> None:
    items_api(api_server)
    assert cli("connect", "mf_nodir", "--spec", str(write_spec(spec(api_server)))).code == 0
    target = tmp_path / "missing-folder" / "x.prom"

    done = cli("connections", "sync", "mf_nodir", "--metrics-file", str(target))

    assert done.code == 2
    assert f"--metrics-file {target}: cannot write it" in done.err
