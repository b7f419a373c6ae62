"""An httpx transport over the standard library's `http.client`: HTTP/1.1 with keep-alive.

httpx's default transport (httpcore + h11, both pure Python) costs about 0.4 ms of CPU a
request; `http.client` parses the status line and headers in C and costs about 0.15 ms. At
page size 100 that is a second per 200k records (bench/README.md), on a sync that is
CPU-bound. Everything above the transport stays httpx: auth flows, URLs, headers, content
decoding (gzip, deflate, br, zstd), and the ApiClient's redirects and credentials rule.

Behaviour kept from httpx's transport: timeouts come from the request (`connect` for
opening the connection, `read` for each socket read), a kept-alive connection that the
server closed while idle is discarded rather than reused, a request is never sent twice
(a failure is raised for the ApiClient's retry policy to handle), and failures are httpx's
exception types (ConnectError, ConnectTimeout, ReadTimeout, ReadError, WriteError,
RemoteProtocolError). Environment proxies are still honoured: httpx mounts its own
transport for proxied URLs. Thread-safe: a connection is used by one request at a time.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_IDLE_PER_ORIGIN = 8
Origin = tuple[str, str, int]


class StdlibTransport(httpx.BaseTransport):
    """Keep-alive connections per origin (scheme, host, port), opened on demand."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        where: Origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout", {})
        connection = self._checkout(where, request, timeouts)
        body = request.read()
        with _as_httpx_errors(request, reading=True):
            try:
                connection.putrequest(
                    request.method,
                    url.raw_path.decode("ascii"),
                    skip_host=True,
                    skip_accept_encoding=True,
                )
                for name, value in request.headers.raw:
                    connection.putheader(name, value)
                connection.endheaders(body or None)
                response = connection.getresponse()
                content = response.read()
            except BaseException:
                connection.close()
                raise
        if response.will_close:
            connection.close()
        else:
            self._checkin(where, connection)
        return httpx.Response(
            response.status,
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.getheaders()],
            stream=httpx.ByteStream(content),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode()},
        )

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _checkout(
        self, where: Origin, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> http.client.HTTPConnection:
        with self._lock:
            pool = self._idle.get(where, [])
            while pool:
                connection = pool.pop()
                if _still_open(connection):
                    _set_timeout(connection, timeouts.get("read"))
                    return connection
                connection.close()
        scheme, host, port = where
        connect_timeout = timeouts.get("connect")
        if scheme == "https":
            context = self._ssl_context or httpx.create_ssl_context()
            self._ssl_context = context
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=connect_timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        with _as_httpx_errors(request, reading=False):
            try:
                connection.connect()
            except BaseException:
                connection.close()
                raise
        _set_timeout(connection, timeouts.get("read"))
        return connection

    def _checkin(self, where: Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            pool = self._idle.setdefault(where, [])
            if len(pool) < _MAX_IDLE_PER_ORIGIN:
                pool.append(connection)
                return
        connection.close()


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable was closed by the server (or sent
    something unasked): either way it cannot carry the next request."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _set_timeout(connection: http.client.HTTPConnection, seconds: float | None) -> None:
    if connection.sock is not None:
        connection.sock.settimeout(seconds)


@contextmanager
def _as_httpx_errors(request: httpx.Request, *, reading: bool) -> Iterator[None]:
    """Socket and http.client failures as the httpx exceptions the ApiClient retries."""
    try:
        yield
    except TimeoutError as exc:
        kind = httpx.ReadTimeout if reading else httpx.ConnectTimeout
        raise kind(str(exc) or "timed out", request=request) from exc
    except ssl.SSLError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except (http.client.IncompleteRead, http.client.RemoteDisconnected) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
    except http.client.HTTPException as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
    except BrokenPipeError as exc:
        raise httpx.WriteError(str(exc), request=request) from exc
    except (socket.gaierror, ConnectionRefusedError) as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except OSError as exc:
        kind = httpx.ReadError if reading else httpx.ConnectError
        raise kind(str(exc) or type(exc).__name__, request=request) from exc
