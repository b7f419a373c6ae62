"""`rq flower` (the compose file's `flower` service): a real Flower process whose /metrics
asks for the same basic-auth credentials as its UI; /healthcheck stays open."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.polling import wait_for
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

pytest.importorskip("flower", reason='Flower is not installed (pip install -e ".[test]")')
pytestmark = [pytest.mark.redis]
RQ = str(Path(sys.executable).parent / "rq")


def get(url: str, user: str | None = None) -> int:
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # not listening (yet)
        return 0


def test_flowers_metrics_need_the_uis_credentials(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RAWQUERY_", "FLOWER_"))},
        "RAWQUERY_HOME": str(tmp_path / "home"),
        "RAWQUERY_REDIS_URL": redis_server.url,
        "FLOWER_BASIC_AUTH": "admin:s3cret-flower",
    }
    log = tmp_path / "flower.log"
    with open(log, "ab") as out:
        flower = subprocess.Popen(
            [RQ, "flower", f"--port={port}", "--address=127.0.0.1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if flower.poll() is not None:
                raise AssertionError(f"rq flower exited:\n{log.read_text()[-3000:]}")
            return get(f"{base}/healthcheck") == 200

        wait_for(up, 60, "Flower to answer /healthcheck")

        assert get(f"{base}/metrics") == 401
        assert get(f"{base}/metrics", "admin:wrong") == 401
        assert get(f"{base}/metrics", "admin:s3cret-flower") == 200
        assert get(f"{base}/workers") == 401  # the UI: the same rule
        assert get(f"{base}/workers", "admin:s3cret-flower") == 200
    finally:
        os.killpg(flower.pid, signal.SIGTERM)
        flower.wait(timeout=30)
