"""A real HTTP server on 127.0.0.1 for tests: routes are plain functions of the request.

    server = ApiServer()
    server.route("/users", lambda req: Reply(body={"data": [...]}))
    with server:               # starts on a free port, stops on exit
        server.url             # "http://127.0.0.1:PORT"
        server.requests        # every request received, in order

A handler may return `Reply(status=503)`, `Reply(delay=2.0)` (answer late, for client
timeouts), `Reply(reset=True)` (drop the connection without answering), `Reply(gzip=True)`
or `Reply(truncate=N)` (announce the whole body, send only N bytes, close). A header value
may be a list: one header line per item (several `Link` headers).
"""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float

    @property
    def params(self) -> dict[str, str]:
        """Query parameters, last value wins."""
        return {k: v[-1] for k, v in self.query.items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


@dataclass
class Reply:
    body: Any = b""
    status: int = 200
    headers: dict[str, str | list[str]] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False
    gzip: bool = False
    truncate: int | None = None

    def payload(self) -> tuple[bytes, dict[str, str | list[str]]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            data = self.body
        elif isinstance(self.body, str):
            data = self.body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = orjson.dumps(self.body)
            headers.setdefault("Content-Type", "application/json")
        if self.gzip:
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        return data, headers


Handler = Callable[[RecordedRequest], Reply]


class ApiServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def route(self, path: str, handler: Handler, methods: tuple[str, ...] = ("GET",)) -> None:
        for method in methods:
            self.routes[(method, path)] = handler

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> ApiServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                    at=time.monotonic(),
                )
                with server._lock:
                    server.requests.append(request)
                handler = server.routes.get((self.command, parts.path))
                reply = handler(request) if handler else Reply({"error": "not found"}, 404)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.reset:
                    # SO_LINGER 0: close sends RST, the client sees a connection reset.
                    linger = struct.pack("ii", 1, 0)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    self.close_connection = True
                    self.connection.close()
                    return
                data, headers = reply.payload()
                self.send_response(reply.status)
                for name, value in headers.items():
                    for item in value if isinstance(value, list) else [value]:
                        self.send_header(name, item)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if reply.truncate is not None:
                    self.wfile.write(data[: reply.truncate])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self._httpd = ThreadingHTTPServer((self.host, 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
