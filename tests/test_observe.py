"""The observe package without a sync: log lines and their ids, the health checks, the
counting of progress events, and the /metrics + /healthz server on a real socket."""

from __future__ import annotations

import io
import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from rawquery_workers.errors import ConfigError
from rawquery_workers.observe import logs, metrics
from rawquery_workers.observe.health import CheckResult, LoopHeartbeat, run_checks
from rawquery_workers.observe.server import ProbeServer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("tests.observe.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


# --- logs ---------------------------------------------------------------------------------


def test_a_json_line_carries_the_ids_of_the_work_in_hand_and_only_those_known(
    json_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = json_lines
    logger.info("before")
    with logs.log_context(connection="shop", sync_id="abc123"):
        logger.info("in the sync")
        with logs.log_context(stream="orders"):
            logger.warning("in the stream %d", 7)
        logger.info("stream over")
    logger.info("after")

    before, in_sync, in_stream, stream_over, after = _lines(out)
    assert {k: before[k] for k in ("level", "logger", "message")} == {
        "level": "INFO",
        "logger": "tests.observe.json",
        "message": "before",
    }
    assert "connection" not in before and "sync_id" not in before and "stream" not in before
    assert in_sync["connection"] == "shop" and in_sync["sync_id"] == "abc123"
    assert "stream" not in in_sync
    assert in_stream["message"] == "in the stream 7" and in_stream["stream"] == "orders"
    assert in_stream["connection"] == "shop" and in_stream["level"] == "WARNING"
    assert "stream" not in stream_over and stream_over["sync_id"] == "abc123"
    assert "connection" not in after
    assert before["time"].endswith("+00:00")


def test_a_traceback_stays_on_its_line_as_a_field(
    json_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = json_lines
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    (line,) = _lines(out)  # one line: the traceback did not spill over several
    assert line["message"] == "it failed"
    assert "ValueError: boom" in line["exception"]


def test_ids_bound_by_token_are_dropped_when_unbound() -> None:
    token = logs.bind(sync_id="s1", stream="users")
    assert logs.current_ids() == logs.LogIds(stream="users", sync_id="s1")
    logs.unbind(token)
    assert logs.current_ids() == logs.NO_IDS


def test_a_bad_level_or_format_is_refused_with_the_valid_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAWQUERY_LOG_LEVEL", "verbose")
    with pytest.raises(ConfigError, match="RAWQUERY_LOG_LEVEL='verbose'.*DEBUG, INFO"):
        logs.configure()
    monkeypatch.setenv("RAWQUERY_LOG_LEVEL", "info")
    monkeypatch.setenv("RAWQUERY_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="RAWQUERY_LOG_FORMAT='xml'.*text or json"):
        logs.configure()


def test_configure_leaves_logging_that_someone_else_set_up_alone() -> None:
    root = logging.getLogger()
    assert any(not isinstance(h, logs._StderrHandler) for h in root.handlers)  # pytest's
    before, level = list(root.handlers), root.level
    logs.configure("DEBUG", "json")
    assert root.handlers == before and root.level == level


# --- health -------------------------------------------------------------------------------


def test_a_loop_is_healthy_while_a_round_went_well_recently() -> None:
    clock = Clock()
    beat = LoopHeartbeat("schedule loop", stale_after=60, clock=clock)
    assert beat().ok  # just started
    clock.now += 61
    assert not beat().ok and "no round" in beat().detail  # started long ago, never ran
    beat.ran()
    assert beat().ok
    clock.now += 30
    beat.ran(error="OperationalError")
    result = beat()
    assert result.ok and "OperationalError" in result.detail  # the last good round is recent
    clock.now += 31
    assert not beat().ok  # 61 s since the last good round


def test_health_is_503_when_any_check_fails_or_breaks() -> None:
    def broken() -> CheckResult:
        raise RuntimeError("bug")

    status, body = run_checks({"redis": lambda: CheckResult(True, "answers")})
    assert status == 200 and body["status"] == "ok"
    status, body = run_checks({"redis": lambda: CheckResult(True, "answers"), "schedule": broken})
    assert status == 503 and body["status"] == "unhealthy"
    assert body["checks"]["schedule"] == {
        "ok": False,
        "detail": "the check itself failed (RuntimeError)",
    }


# --- metrics ------------------------------------------------------------------------------


def _value(name: str, **labels: str) -> float:
    return metrics.meters().registry.get_sample_value(name, labels) or 0.0


def test_progress_events_are_counted_by_connection_stream_and_status() -> None:
    seen: list[dict[str, Any]] = []
    hook = metrics.counting("unit_conn", seen.append)
    stream = {"connection": "unit_conn", "stream": "orders"}
    events = [
        {"event": "request", "stream": "orders", "status": 200, "rate_limit_wait": 0.25},
        {"event": "request", "stream": "orders", "status": 429, "rate_limit_wait": 0.0},
        {"event": "request", "stream": "orders", "status": None, "reason": "timed out"},
        {"event": "retry", "stream": "orders", "attempt": 1, "wait": 1.0},
        {"event": "page", "stream": "orders", "records": 40, "url": "https://x/?api_key=k"},
        {"event": "page", "stream": "orders", "records": 2, "url": "https://x/?page=2"},
    ]
    for event in events:
        hook(event)

    assert seen == events  # every event still reaches the stream's own hook
    assert _value("rawquery_requests_total", **stream, status="200") == 1
    assert _value("rawquery_requests_total", **stream, status="429") == 1
    assert _value("rawquery_requests_total", **stream, status="error") == 1
    assert _value("rawquery_retries_total", **stream) == 1
    assert _value("rawquery_rate_limit_wait_seconds_total", **stream) == pytest.approx(0.25)
    assert _value("rawquery_pages_total", **stream) == 2
    assert _value("rawquery_records_fetched_total", **stream) == 42
    labels = {
        k
        for family in metrics.meters().registry.collect()
        for sample in family.samples
        for k in sample.labels
    }
    assert labels <= {"connection", "stream", "status", "le"}  # never a URL or a parameter


# --- the server ---------------------------------------------------------------------------


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_server_answers_metrics_and_health_on_a_real_socket() -> None:
    healthy = {"ok": True}
    server = ProbeServer(
        "127.0.0.1",
        0,
        lambda: (b"rawquery_up 1\n", "text/plain; version=0.0.4"),
        {"redis": lambda: CheckResult(healthy["ok"], "Redis at redis://h:6379/0")},
    ).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert _get(base + "/metrics") == (200, b"rawquery_up 1\n")
        status, body = _get(base + "/healthz")
        assert status == 200 and json.loads(body)["checks"]["redis"]["ok"] is True
        healthy["ok"] = False
        status, body = _get(base + "/healthz")
        assert status == 503 and json.loads(body)["status"] == "unhealthy"
        assert _get(base + "/other")[0] == 404
    finally:
        server.stop()


def test_a_port_in_use_is_refused_with_the_setting_to_change() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*RAWQUERY_METRICS_PORT"):
            ProbeServer("127.0.0.1", port, lambda: (b"", "text/plain"), {})
