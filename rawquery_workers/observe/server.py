"""The HTTP server of a worker or beat process: GET /metrics (Prometheus' text format) and
GET /healthz (observe/health.py), on a daemon thread, started on RAWQUERY_METRICS_PORT.

A small `http.server` rather than prometheus_client's own `start_http_server`: the health
endpoint and the worker's aggregated metrics (exposition.py) are served by the same socket,
and neither needs more than a thread per request.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rawquery_workers.errors import ConfigError
from rawquery_workers.observe.health import Check, run_checks

log = logging.getLogger(__name__)
Metrics = Callable[[], tuple[bytes, str]]  # the exposition's body and content type


class ProbeServer:
    """/metrics and /healthz on `host`:`port` (port 0: any free one, see `port`)."""

    def __init__(self, host: str, port: int, metrics: Metrics, checks: Mapping[str, Check]):
        try:
            self._httpd = ThreadingHTTPServer((host, port), _handler(metrics, checks))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics and health on {host}:{port}: {exc.strerror}; set "
                "RAWQUERY_METRICS_PORT to a free port (each process on a host needs its own)"
            ) from exc
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="rq-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> ProbeServer:
        self._thread.start()
        log.info("serving /metrics and /healthz on port %d", self.port)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(metrics: Metrics, checks: Mapping[str, Check]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # a scrape every few seconds is not worth a log line

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                try:
                    body, kind = metrics()
                    self._send(200, body, kind)
                except Exception as exc:  # a failed scrape is the scraper's signal
                    log.warning("metrics scrape failed: %s: %s", type(exc).__name__, exc)
                    self._send(500, b"metrics unavailable\n", "text/plain; charset=utf-8")
            elif path == "/healthz":
                status, report = run_checks(checks)
                self._send(status, json.dumps(report).encode(), "application/json")
            else:
                self._send(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
