"""Real worker and beat processes: /metrics adds up what the pool's processes counted,
/healthz follows Redis (worker) and the schedule loop (beat), and RAWQUERY_LOG_LEVEL and
RAWQUERY_LOG_FORMAT shape their log lines, which carry the task's ids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rawquery_workers.registry import open_registry
from tests.distributed.conftest import RQ, TOKEN, Dist, Shop, Worker, Workers
from tests.support.polling import wait_for
from tests.support.ports import free_port

pytestmark = [pytest.mark.distributed, pytest.mark.redis]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:  # not listening (yet)
        return 0, b""


def health(port: int) -> tuple[int, dict[str, Any]]:
    status, body = get(f"http://127.0.0.1:{port}/healthz")
    return status, (json.loads(body) if status else {})


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, body
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def json_lines(log: Path) -> list[dict[str, Any]]:
    """The worker's log lines (Celery prints its start-up banner as plain text: skipped)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def observed_env(port: int, level: str) -> dict[str, str]:
    return {
        "RAWQUERY_METRICS_PORT": str(port),
        "RAWQUERY_METRICS_HOST": "127.0.0.1",
        "RAWQUERY_LOG_FORMAT": "json",
        "RAWQUERY_LOG_LEVEL": level,
    }


def test_a_worker_serves_its_pools_metrics_health_and_json_lines(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    shop.add("events", 45)  # 5 pages of 10; segments of 20 records: 3 commits
    dist.connect("observed", shop.spec())
    port = free_port()
    (worker,) = workers.start(1, **observed_env(port, "INFO"))  # prefork, one pool process
    status, body = wait_for(lambda: (h := health(port))[0] and h, 30, "the worker's /healthz")
    assert status == 200 and body["checks"]["redis"]["ok"] is True, body

    done = dist.rq("connections", "sync", "observed", "--wait")

    assert done.returncode == 0, done.stdout + done.stderr
    labels = {"connection": "observed", "stream": "events"}
    served = len(shop.server.requests_to("/events"))
    synced = ("rawquery_sync_duration_seconds_count", frozenset(
        {"connection": "observed", "status": "succeeded"}.items()
    ))  # fmt: skip
    # The sync's end is counted by the pool process just after it records it.
    found = wait_for(lambda: (m := scrape(port)).get(synced) == 1 and m, 15, "the sync's end")

    def value(name: str, **extra: str) -> float | None:
        return found.get((name, frozenset({**labels, **extra}.items())))

    assert value("rawquery_requests_total", status="200") == served == 5
    assert value("rawquery_pages_total") == 5
    assert value("rawquery_records_fetched_total") == 45
    assert value("rawquery_rows_committed_total") == 45  # three commits, added up
    assert value("rawquery_stream_duration_seconds_count", status="succeeded") == 1
    since = value("rawquery_seconds_since_last_success")
    assert since is not None and 0 <= since < 120

    (run,) = open_registry().latest_stream_runs("observed", ["events"])
    ids = {"connection": "observed", "stream": "events", "sync_id": run.sync_id}

    def commit_lines() -> list[dict[str, Any]]:
        lines = json_lines(worker.log)
        return [x for x in lines if "rq.commit" in x["message"] and "succeeded" in x["message"]]

    committed = wait_for(commit_lines, 15, "the commit tasks' log lines")
    assert all({k: line.get(k) for k in ids} == ids for line in committed), committed
    assert {"time", "level", "logger", "message"} <= set(committed[0])
    assert TOKEN not in worker.log.read_text()

    dist.redis.stop()
    status, body = wait_for(lambda: (h := health(port))[0] == 503 and h, 30, "an unhealthy worker")
    assert body["status"] == "unhealthy" and body["checks"]["redis"]["ok"] is False
    assert "does not answer" in body["checks"]["redis"]["detail"]


def test_rawquery_log_level_wins_over_the_workers_loglevel(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    shop.add("events", 15)
    dist.connect("quiet", shop.spec())
    # The fixture starts workers with `-l INFO`; RAWQUERY_LOG_LEVEL says WARNING.
    (worker,) = workers.start(1, **observed_env(free_port(), "WARNING"))

    done = dist.rq("connections", "sync", "quiet", "--wait")

    assert done.returncode == 0, done.stdout + done.stderr
    _stop(worker)  # its log is complete once it exited
    text = worker.log.read_text()
    assert "succeeded in" not in text and " ready." not in text  # Celery's INFO lines
    assert all(line["level"] != "INFO" for line in json_lines(worker.log))


def _stop(worker: Worker) -> None:
    os.killpg(worker.process.pid, signal.SIGTERM)
    worker.process.wait(timeout=30)


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_beat_serves_its_health_and_honours_the_log_settings(
    dist: Dist, tmp_path: Path, level: str
) -> None:
    port = free_port()
    log = tmp_path / "beat.log"
    with open(log, "ab") as out:
        beat = subprocess.Popen(
            [RQ, "beat"],  # `rq beat` asks Celery for --loglevel=INFO
            env={**dist.env, **observed_env(port, level)},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        status, body = wait_for(
            lambda: (h := health(port))[0] == 200 and "ran well" in str(h[1]) and h,
            60,
            "beat's first round of its schedule loop",
        )
        assert body["checks"]["schedule"]["ok"] is True
        assert scrape(port) is not None  # /metrics answers too
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=30)
    lines = json_lines(log)
    starting = [x for x in lines if x["message"] == "beat: Starting..."]
    if level == "INFO":
        assert starting and starting[0]["level"] == "INFO"
    else:
        assert starting == [] and all(x["level"] != "INFO" for x in lines)
