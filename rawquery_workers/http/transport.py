"""An httpx transport over plain sockets: HTTP/1.1 with keep-alive, the wire format read here.

Why: httpx's own transport (httpcore + h11, pure Python) and `http.client` spend most of a
small JSON request's CPU parsing the response head, and a sync at page size 100 is
CPU-bound (figures in docs/decisions/006). Everything above the transport stays httpx:
auth flows, URLs, headers, and the ApiClient's redirects and credentials rule. Unlike
httpx's transport, this one also bounds each response (a deadline and size caps) and
undoes its Content-Encoding itself (see Bounds).

The wire format handled (RFC 9112): a response body framed by `Transfer-Encoding: chunked`
(extensions and trailers skipped), by `Content-Length`, or by the server closing the
connection (which is then not reused); no body after HEAD or for 1xx, 204 and 304.
Informational 1xx answers before the final one are skipped. An HTTP/1.0 answer closes the
connection unless it says `keep-alive`; `Connection: close` always does. Lines may end in
CRLF or LF alone, folded header lines are joined. A head over 128 KiB, a malformed status
line or chunk size, or a body cut short are RemoteProtocolError. A request header holding a
line break or NUL, or a name holding a colon, is refused before anything is sent
(LocalProtocolError, naming the header but not its value).

Bounds (rawquery_workers/http/response_limits.py): a request has a deadline for the whole
exchange (the limits' `deadline`, or the caller's earlier NOT_AFTER), checked before every
socket read, which then waits at most until it; a body over `max_bytes` fails as it passes
the cap (a Content-Length over it at once: nothing is allocated from a header, a body
grows with the bytes that really arrive). Content codings (gzip, deflate, zstd, br) are
undone here, a step at a time under the same cap, so the response httpx gets carries the
decoded body and no Content-Encoding header.

Behaviour kept from httpx's transport: timeouts come from the request (`connect` for
opening the connection and the TLS handshake, `read` for each socket read), a kept-alive
connection that the server closed while idle is discarded rather than reused, a request is
never sent twice (a failure is raised for the ApiClient's retry policy to handle), and
failures are httpx's exception types (ConnectError, ConnectTimeout, ReadTimeout, ReadError,
WriteError, RemoteProtocolError). Thread-safe: a connection is used by one request at a
time. Proxies: this transport connects directly; `http.build_client` mounts httpx's proxy
transports for HTTP(S)_PROXY / ALL_PROXY (`http.proxy_mounts`, bounded by
`BoundedTransport`), and `send` then takes httpx's ordinary path.

`send(client, request, auth)` is what the ApiClient calls instead of `client.send`: the same
auth flow, cookies and decoding, without httpx.Client's per-request bookkeeping, when the
client hands every request to a StdlibTransport (otherwise it is `client.send` itself).
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import httpx

from rawquery_workers.http.response_limits import (
    Budget,
    DeadlineExceeded,
    ResponseLimits,
    ResponseTooLarge,
    decode,
    encodings_of,
    without_encoding,
)
from rawquery_workers.spec.origin import DEFAULT_PORTS

_NO_AUTH = httpx.Auth()
_MAX_IDLE_PER_ORIGIN = 64  # as many as `concurrency` allows in flight
_MAX_HEAD = 128 * 1024  # status line + headers of one response, and one chunk-size line
_RECV = 64 * 1024  # larger reads cost more than they save: each allocates (and maps) that much
_NO_BODY = frozenset({204, 304})
_STATUS = re.compile(rb"HTTP/1\.([0-9])[ \t]+([1-9][0-9]{2})(?:[ \t]+(.*))?")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_LENGTH = re.compile(rb"[0-9]{1,18}")
# Header names and values holding a line break or NUL, or names holding a colon, could
# smuggle a second request onto the connection: such a head is refused whole.
_NAMES = re.compile(rb"(?:[^:\s\x00][^:\r\n\x00]*\n)*")
_NAME = re.compile(rb"[^:\s\x00][^:\r\n\x00]*")
_VALUE = re.compile(rb"[^\r\n\x00]*")
_UNBOUNDED = ResponseLimits()
# Raised by this module (and response_limits) as they are, with the request attached.
_RAISED_HERE = (httpx.RemoteProtocolError, httpx.DecodingError, DeadlineExceeded, ResponseTooLarge)
PoolKey = tuple[str, str, int]  # scheme, host as sent, port: one pool of connections


class StdlibTransport(httpx.BaseTransport):
    """Keep-alive connections per origin (scheme, host, port), opened on demand."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        timeout: httpx.Timeout | None = None,
        limits: ResponseLimits = _UNBOUNDED,
    ) -> None:
        self._ssl_context = ssl_context
        self.limits = limits
        # For requests that carry no timeout: httpx sets one only on the request passed to
        # `send`, not on those an auth flow builds (an OAuth2 token request, a custom login),
        # which would otherwise wait on a silent server forever.
        self._timeouts = timeout.as_dict() if timeout is not None else {}
        self._idle: dict[PoolKey, list[_Connection]] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        method = request.method.encode("ascii")
        head = _request_head(method, url.raw_path, request.headers.raw, request)
        body = request.read()
        if body and request.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
        where: PoolKey = (scheme, url.raw_host.decode("ascii"), url.port or DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout", self._timeouts)
        budget = self.limits.budget(request)
        connection = self._checkout(where, request, timeouts, budget)
        with _as_httpx_errors(request, reading=True):
            try:
                connection.sock.sendall(head + body if body else head)
                answer = connection.read_response(budget, head_only=method == b"HEAD")
                if answer.encoding is not None:  # a failure is not pooled
                    # Header dropped for an empty body too: httpx would decode it, and
                    # fail on nothing at all in some codings ("gzip, zstd").
                    codings = encodings_of(answer.encoding)
                    answer.body = decode(answer.body, codings, budget.max_bytes)
                    answer.headers = without_encoding(answer.headers)
            except BaseException:
                connection.close()
                raise
        if answer.keep_alive and connection.drained:
            self._checkin(where, connection)
        else:
            connection.close()
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(answer.body),
            request=request,
            extensions={"http_version": answer.version, "reason_phrase": answer.reason},
        )

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _checkout(
        self,
        where: PoolKey,
        request: httpx.Request,
        timeouts: dict[str, float | None],
        budget: Budget,
    ) -> _Connection:
        with self._lock:
            pool = self._idle.get(where, [])
            while pool:
                connection = pool.pop()
                if connection.still_open():
                    if connection.sock.gettimeout() != timeouts.get("read"):
                        connection.sock.settimeout(timeouts.get("read"))  # a system call each
                    return connection
                connection.close()
        scheme, host, port = where
        connect = timeouts.get("connect")
        if (left := budget.left()) is not None:
            if left <= 0:
                late = budget.exceeded()
                late.request = request
                raise late
            connect = left if connect is None else min(connect, left)
        with _as_httpx_errors(request, reading=False):
            sock = socket.create_connection((host, port), timeout=connect)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if scheme == "https":
                    context = self._ssl_context or httpx.create_ssl_context()
                    self._ssl_context = context
                    sock = context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        sock.settimeout(timeouts.get("read"))
        return _Connection(sock)

    def _checkin(self, where: PoolKey, connection: _Connection) -> None:
        with self._lock:
            pool = self._idle.setdefault(where, [])
            if len(pool) < _MAX_IDLE_PER_ORIGIN:
                pool.append(connection)
                return
        connection.close()


def send(client: httpx.Client, request: httpx.Request, auth: httpx.Auth | None) -> httpx.Response:
    """`client.send(request, auth=auth)`, skipping httpx's per-request bookkeeping
    (docs/decisions/006) when the client hands every request to a `StdlibTransport`
    unchanged: a plain httpx.Client, open, with no proxy mounted, no event hooks and the
    default encoding.

    What httpx's send does that matters is done here too: the auth flow is driven the same
    way (every request it yields is sent, its response sent back into it), cookies a
    response sets go into the client's jar (sent by `build_request` from then on), and the
    body is read and decoded. Left out, as nothing reads them: `response.elapsed`,
    `response.history` and httpx's INFO log line (its logger is kept at WARNING anyway)."""
    transport = _direct_transport(client)
    if transport is None or (auth is None and request.url.userinfo):
        return client.send(request, auth=auth)  # httpx turns the userinfo into basic auth
    if "timeout" not in request.extensions:
        request.extensions = {**request.extensions, "timeout": client.timeout.as_dict()}
    flow = (auth or _NO_AUTH).sync_auth_flow(request)
    try:
        request = next(flow)
        while True:
            response = transport.handle_request(request)
            response.read()
            if "set-cookie" in response.headers or "set-cookie2" in response.headers:
                client.cookies.extract_cookies(response)
            try:
                request = flow.send(response)
            except StopIteration:
                return response
    finally:
        flow.close()


def _direct_transport(client: httpx.Client) -> StdlibTransport | None:
    """The client's StdlibTransport when `send` may hand requests to it itself. httpx has
    no public way to ask which transport serves a URL: its private attributes are read
    with defaults, so a future httpx without them takes the ordinary path."""
    if type(client) is not httpx.Client or client.is_closed or any(client.event_hooks.values()):
        return None
    transport = getattr(client, "_transport", None)
    if getattr(client, "_mounts", None) != {} or not isinstance(transport, StdlibTransport):
        return None
    return transport if getattr(client, "_default_encoding", None) == "utf-8" else None


@dataclass(slots=True)
class _Answer:
    """A response as read off the wire, before httpx wraps it."""

    version: bytes
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    keep_alive: bool = True
    encoding: list[bytes] | None = None  # the Content-Encoding header values, if any


class _Connection:
    """One socket and the bytes received on it but not consumed yet (`_buffer[_at:]`);
    `_budget` bounds the response being read."""

    __slots__ = ("_at", "_budget", "_buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self._at = 0
        self._budget = Budget(None, None, False, None)

    @property
    def drained(self) -> bool:
        """Nothing was received past the response: the connection can carry another one."""
        return self._at == len(self._buffer)

    def still_open(self) -> bool:
        """An idle keep-alive socket that is readable was closed by the server (or sent
        something unasked): either way it cannot carry the next request."""
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        self.sock.close()

    def read_response(self, budget: Budget, *, head_only: bool) -> _Answer:
        """The final response (1xx answers skipped) with its body read, within `budget`."""
        self._budget = budget
        answer = self._read_head()
        while 100 <= answer.status < 200 and answer.status != 101:
            answer = self._read_head()
        framing = _framing(answer)
        if answer.status == 101:  # the connection now speaks another protocol
            answer.keep_alive = False
        elif head_only or answer.status in _NO_BODY:
            pass
        elif framing == "chunked":
            answer.body = self._read_chunked()
        elif framing is None:
            answer.body = self._read_to_close()
            answer.keep_alive = False
        else:
            budget.declared(framing)
            answer.body = self._read_exactly(framing)
        if self._at == len(self._buffer):  # an idle connection holds no stale bytes
            self._buffer, self._at = b"", 0
        return answer

    # --- the head ----------------------------------------------------------------------

    def _read_head(self) -> _Answer:
        searched = self._at
        while True:
            end, after = _head_end(self._buffer, searched)
            pending = (end if end >= 0 else len(self._buffer)) - self._at
            if pending > _MAX_HEAD:
                raise httpx.RemoteProtocolError("the response head is over 128 KiB")
            if end >= 0:
                break
            searched = max(0, pending - 2)  # the blank line may straddle the two reads
            if not self._receive():
                if pending:
                    raise httpx.RemoteProtocolError("the connection closed in the response head")
                raise httpx.RemoteProtocolError("Remote end closed connection without response")
        lines = self._buffer[self._at : end].split(b"\n")
        self._at = after
        return _parse_head(lines)

    # --- bodies ------------------------------------------------------------------------

    def _read_exactly(self, size: int) -> bytes:
        """`size` bytes. Kept as the reads return them, not in a buffer of the size
        announced: memory follows the bytes that arrive, whatever a header says."""
        buffer, at = self._buffer, self._at
        available = len(buffer) - at
        if available >= size:
            self._at = at + size
            return buffer[at : at + size]
        parts = [buffer[at:]]
        self._buffer, self._at = b"", 0
        got = available
        while got < size:
            data = self._recv(min(size - got, _RECV))
            if not data:
                raise httpx.RemoteProtocolError(
                    f"IncompleteRead({got} bytes read, {size - got} more expected)"
                )
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def _read_line(self) -> bytes:
        """One line without its line ending (chunk sizes and trailers)."""
        while True:
            end = self._buffer.find(b"\n", self._at)
            if end >= 0:
                line = self._buffer[self._at : end]
                self._at = end + 1
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buffer) - self._at > _MAX_HEAD:
                raise httpx.RemoteProtocolError("a chunk-size line is over 128 KiB")
            if not self._receive():
                raise httpx.RemoteProtocolError("the connection closed in a chunked body")

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self._read_line().split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise httpx.RemoteProtocolError(f"invalid chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            self._budget.count(total)  # before reading: a chunk may announce 2**64 bytes
            parts.append(self._read_exactly(size))
            if self._read_line():
                raise httpx.RemoteProtocolError("a chunk is longer than its size")
        while self._read_line():  # trailer fields: not used
            pass
        return b"".join(parts)

    def _read_to_close(self) -> bytes:
        parts = [self._buffer[self._at :]]
        total = len(parts[0])
        self._budget.count(total)
        self._buffer, self._at = b"", 0
        while data := self._recv(_RECV):
            total += len(data)
            self._budget.count(total)
            parts.append(data)
        return b"".join(parts)

    def _receive(self) -> bool:
        """Append what the socket has (blocking up to the read timeout); False at EOF."""
        data = self._recv(_RECV)
        if not data:
            return False
        self._buffer = self._buffer[self._at :] + data
        self._at = 0
        return True

    def _recv(self, size: int) -> bytes:
        """One socket read, waiting no later than the budget's deadline."""
        budget = self._budget
        if budget.until is None:
            return self.sock.recv(size)
        left = budget.until - time.monotonic()
        if left <= 0:
            raise budget.exceeded()
        timeout = self.sock.gettimeout()
        if timeout is not None and timeout <= left:
            return self.sock.recv(size)  # the read timeout ends the wait first
        self.sock.settimeout(left)  # `_checkout` restores the read timeout for the next use
        try:
            return self.sock.recv(size)
        except TimeoutError:
            raise budget.exceeded() from None


def _head_end(buffer: bytes, start: int) -> tuple[int, int]:
    """(end of the head's last line, start of the body) in `buffer`, or (-1, -1): the head
    ends at the first empty line, CRLF or bare LF."""
    crlf = buffer.find(b"\n\r\n", start)
    lf = buffer.find(b"\n\n", start, crlf + 1 if crlf >= 0 else len(buffer))
    if lf >= 0:
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 3
    return -1, -1


def _parse_head(lines: list[bytes]) -> _Answer:
    match = _STATUS.fullmatch(lines[0].rstrip(b"\r"))
    if match is None:
        shown = lines[0][:40].decode("latin-1")
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {shown!r}")
    minor, code, reason = match.groups()
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and headers:  # obsolete folding: continues the last value
            name, value = headers[-1]
            headers[-1] = (name, (value + b" " + line.strip()).strip())
            continue
        name, colon, value = line.partition(b":")
        if colon:
            headers.append((name.strip(), value.strip()))
    version = b"HTTP/1.0" if minor == b"0" else b"HTTP/1.1"
    return _Answer(version, int(code), (reason or b"").strip(), headers)


def _framing(answer: _Answer) -> Literal["chunked"] | int | None:
    """How the body is framed: chunked, by a Content-Length, or (None) by the connection's
    close. Also clears `keep_alive` when the answer's Connection header or version says so."""
    connection = b""
    keep_alive_header = False
    transfer_encoding: bytes | None = None
    length: bytes | None = None
    for name, value in answer.headers:
        key = name.lower()
        if key == b"connection":
            connection += b"," + value.lower()
        elif key == b"content-encoding":
            answer.encoding = [*(answer.encoding or []), value]
        elif key == b"content-length" and length is None:
            length = value
        elif key == b"transfer-encoding":
            transfer_encoding = value.lower()
        elif key == b"keep-alive":
            keep_alive_header = True
    if b"close" in connection:
        answer.keep_alive = False
    elif answer.version == b"HTTP/1.0" and not keep_alive_header:
        answer.keep_alive = b"keep-alive" in connection
    if transfer_encoding is not None:  # it overrides any Content-Length
        chunked = transfer_encoding.rsplit(b",", 1)[-1].strip() == b"chunked"
        return "chunked" if chunked else None
    if length is not None:
        values = {v.strip() for v in length.split(b",")}  # "5, 5" is 5; "5, 6" is no length
        if len(values) == 1 and _LENGTH.fullmatch(value := values.pop()):
            return int(value)
    return None


def _request_head(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], request: httpx.Request
) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"\r\n")
    head = b"\r\n".join(lines)
    lines_end = len(headers) + 2  # one CRLF per line, and the blank line
    if (
        head.count(b"\n") != lines_end
        or head.count(b"\r") != lines_end
        or b"\x00" in head
        or not _NAMES.fullmatch(b"".join(name + b"\n" for name, _ in headers))
    ):
        bad = [n for n, v in headers if not (_NAME.fullmatch(n) and _VALUE.fullmatch(v))]
        what = f"header {bad[0].decode('latin-1')!r}" if bad else "request line"
        raise httpx.LocalProtocolError(
            f"the {what} holds a line break, NUL or misplaced colon: not sent", request=request
        )
    return head


@contextmanager
def _as_httpx_errors(request: httpx.Request, *, reading: bool) -> Iterator[None]:
    """Socket failures as the httpx exceptions the ApiClient retries."""
    try:
        yield
    except TimeoutError as exc:
        timeout: type[httpx.TimeoutException] = (
            httpx.ReadTimeout if reading else httpx.ConnectTimeout
        )
        raise timeout(str(exc) or "timed out", request=request) from exc
    except ssl.SSLError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except _RAISED_HERE as exc:
        exc.request = request
        raise
    except BrokenPipeError as exc:
        raise httpx.WriteError(str(exc), request=request) from exc
    except (socket.gaierror, ConnectionRefusedError) as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except OSError as exc:
        failed: type[httpx.TransportError] = httpx.ReadError if reading else httpx.ConnectError
        raise failed(str(exc) or type(exc).__name__, request=request) from exc
