"""docker-compose.yml's observability and its one-shot setup: worker and beat serve
/metrics and /healthz, beat's healthcheck fails when its /healthz does, Flower runs as
`rq flower` (its /metrics behind its login), and the bucket setup hides no failure."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from rawquery_workers.observe.health import CheckResult
from rawquery_workers.observe.server import ProbeServer
from tests.production.test_deploy_files import COMPOSE, ENV_EXAMPLE, compose
from tests.support.ports import free_port

PORT = "9808"


def services() -> dict[str, Any]:
    return dict(compose()["services"])


def test_worker_and_beat_serve_metrics_and_health_without_publishing_a_port() -> None:
    for name in ("worker", "beat"):
        service = services()[name]
        assert service["environment"]["RAWQUERY_METRICS_PORT"] == PORT, name
        assert "ports" not in service, f"{name}: Prometheus scrapes it on the compose network"
    assert services()["beat"]["environment"]["RAWQUERY_REDIS_URL"].startswith("redis://")


@pytest.mark.parametrize(("healthy", "exit_ok"), [(True, True), (False, False)])
def test_beats_healthcheck_follows_its_healthz(healthy: bool, exit_ok: bool) -> None:
    test = services()["beat"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    port = free_port()
    code = test[3].replace(f"127.0.0.1:{PORT}/healthz", f"127.0.0.1:{port}/healthz")
    assert code != test[3], "the healthcheck must ask /healthz on the metrics port"
    check = {"schedule": lambda: CheckResult(healthy, "the schedule loop")}
    server = ProbeServer("127.0.0.1", port, lambda: (b"", "text/plain"), check).start()
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    finally:
        server.stop()
    assert (done.returncode == 0) is exit_ok, done.stderr


def test_the_bucket_setup_lets_no_step_fail_quietly() -> None:
    setup = services()["createbucket"]["entrypoint"]
    assert setup[:2] == ["sh", "-ec"]  # any failing step fails the one-shot
    script = setup[2]
    assert "|| true" not in script and "|| :" not in script
    assert "mc admin policy attach local readwrite" in script


def test_flower_runs_as_rq_flower_with_its_login() -> None:
    flower = services()["flower"]
    assert "entrypoint" not in flower  # the image's: rq
    assert flower["command"][0] == "flower"
    assert "FLOWER_BASIC_AUTH" in flower["environment"]


def test_the_log_settings_reach_every_rawquery_process_and_are_documented() -> None:
    text = ENV_EXAMPLE.read_text()
    for name in ("worker", "beat", "flower", "migrate", "rq"):
        environment = services()[name]["environment"]
        assert "RAWQUERY_LOG_LEVEL" in environment and "RAWQUERY_LOG_FORMAT" in environment
    assert "RAWQUERY_LOG_FORMAT" in text and "RAWQUERY_LOG_LEVEL" in text
    assert "9808" in COMPOSE.read_text()
