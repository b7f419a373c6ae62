"""`python -m rawquery_workers.demo.sample_api` serves the demo API until it is stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from rawquery_workers.demo.sample_api import DEMO_TOKEN
from tests.support.polling import wait_for
from tests.support.ports import free_port


def _get(url: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _answers(url: str) -> bool:
    try:
        _get(url)
    except OSError:  # not listening yet
        return False
    return True


def test_the_module_serves_the_demo_api_until_terminated() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "rawquery_workers.demo.sample_api", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for(lambda: process.poll() is not None or _answers(base), 30, "the demo API")
        assert process.poll() is None, process.communicate()

        status, body = _get(f"{base}/orders?offset=0&limit=5", DEMO_TOKEN)
        assert status == 200 and [o["id"] for o in body["data"]] == [1, 2, 3, 4, 5]
        assert body["total"] == 250
        status, body = _get(f"{base}/customers?page=2&per_page=10", DEMO_TOKEN)
        assert status == 200 and [c["id"] for c in body["results"]][0] == 11
        assert _get(f"{base}/orders")[0] == 401  # the token is required
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert f"demo API at {base}" in out and DEMO_TOKEN in out


def test_a_port_in_use_is_an_error_not_a_traceback() -> None:
    port = free_port()
    first = subprocess.Popen(
        [sys.executable, "-m", "rawquery_workers.demo.sample_api", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        assert "demo API at" in first.stdout.readline()  # it listens now
        second = subprocess.run(
            [sys.executable, "-m", "rawquery_workers.demo.sample_api", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        first.terminate()
        first.communicate(timeout=10)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
    assert "Traceback" not in second.stderr
