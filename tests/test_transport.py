"""StdlibTransport against real sockets on 127.0.0.1: keep-alive reuse, a kept-alive
connection the server closed while idle, the wire format (chunked, HTTP/1.0, bodiless
answers, 1xx, malformed answers), failures as httpx's exception types, and `send`, the
ApiClient's way past httpx.Client's bookkeeping."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rawquery_workers.http.client import build_client
from rawquery_workers.http.response_limits import (
    NOT_AFTER,
    BoundedTransport,
    DeadlineExceeded,
    ResponseLimits,
    ResponseTooLarge,
    zstandard,
)
from rawquery_workers.http.transport import StdlibTransport, _direct_transport, send


class RawServer:
    """Answers each request with a small JSON body on a kept-alive connection; after
    `per_connection` answers it closes the connection without saying so (no
    `Connection: close`), as servers with a short idle timeout do."""

    def __init__(self, per_connection: int) -> None:
        self.per_connection = per_connection
        self.connections = 0
        self.requests = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.closed = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping = True
        socket.create_connection(self.listener.getsockname()).close()  # wakes accept()
        self.thread.join(5)
        self.listener.close()

    def _accept(self) -> socket.socket | None:
        """The next connection (counted), or None once the server is stopping."""
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return None
        if self.stopping:
            conn.close()
            return None
        self.connections += 1
        return conn

    def _serve(self) -> None:
        while (conn := self._accept()) is not None:
            with conn:
                reader = conn.makefile("rb")
                for _ in range(self.per_connection):
                    if not _read_request(reader):
                        break
                    self.requests += 1
                    body = b'{"n": %d}' % self.requests
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                reader.close()
            self.closed.set()


class ScriptedServer(RawServer):
    """Answers request n (0-based, over all connections) with `answers[n]`, bytes sent as
    they are; `close_after` holds the n after which it closes the connection. Records the
    head of every request it read."""

    def __init__(
        self,
        *answers: bytes,
        close_after: frozenset[int] = frozenset(),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(per_connection=len(answers))
        self.answers = answers
        self.close_after = close_after
        self.heads: list[bytes] = []
        self.tls = tls
        if tls is not None:
            self.url = self.url.replace("http://", "https://")

    def _serve(self) -> None:
        while (conn := self._accept()) is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True) if self.tls else conn
            except (OSError, ssl.SSLError):  # a client that refused the certificate
                conn.close()
                continue
            with conn, conn.makefile("rb") as reader:
                try:
                    while self.requests < len(self.answers) and (head := _read_head(reader)):
                        self.heads.append(head)
                        self.requests += 1
                        conn.sendall(self.answers[self.requests - 1])
                        if self.requests - 1 in self.close_after:
                            break
                except OSError:  # the client hung up on an answer it refused
                    pass


def _read_request(reader: object) -> bool:
    return bool(_read_head(reader))


def _read_head(reader: object) -> bytes:
    lines: list[bytes] = []
    while True:
        line = reader.readline()  # type: ignore[attr-defined]
        if not line:
            return b""
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)
        lines.append(line)


def answer(body: bytes = b"{}", *headers: str, status: str = "HTTP/1.1 200 OK") -> bytes:
    """A response with a Content-Length body (unless a header says otherwise)."""
    head = [status, *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    framed = b"".join(b"%x;name=value\r\n%b\r\n" % (len(c), c) for c in chunks)
    return framed + b"0\r\n" + trailer + b"\r\n"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with build_client(read_timeout=5.0) as http:
        yield http


# --- connections ---------------------------------------------------------------------------


def test_connections_are_kept_alive_and_reused() -> None:
    with RawServer(per_connection=100) as server, build_client(read_timeout=5.0) as client:
        answers = [client.get(f"{server.url}/x").json()["n"] for _ in range(5)]
    assert answers == [1, 2, 3, 4, 5]
    assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_not_reused(client: httpx.Client) -> None:
    with RawServer(per_connection=1) as server:
        assert client.get(f"{server.url}/x").json() == {"n": 1}
        assert server.closed.wait(5)  # the server has hung up on the idle connection
        assert client.get(f"{server.url}/x").json() == {"n": 2}  # no error, a new connection
    assert server.connections == 2
    assert server.requests == 2  # nothing was sent twice


def test_failures_are_httpx_exception_types(client: httpx.Client) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{port}/x")
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        with build_client(read_timeout=0.2) as fast, pytest.raises(httpx.ReadTimeout):
            fast.get(f"http://127.0.0.1:{silent.getsockname()[1]}/x")
    finally:
        silent.close()
    with pytest.raises(httpx.UnsupportedProtocol):
        client.get("ftp://127.0.0.1/x")


def test_a_request_an_auth_flow_builds_gets_the_client_timeout() -> None:
    """httpx sets the timeout only on the request given to send; a token request or login
    an auth flow yields has none, and must still time out on a silent server."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    token_url = f"http://127.0.0.1:{silent.getsockname()[1]}/token"

    class TokenFirst(httpx.Auth):
        def auth_flow(
            self, request: httpx.Request
        ) -> Generator[httpx.Request, httpx.Response, None]:
            yield httpx.Request("POST", token_url)  # as oauth2.py and custom.py build them
            yield request

    try:
        with build_client(read_timeout=0.2) as fast:
            for sender in (lambda r: send(fast, r, TokenFirst()),
                           lambda r: fast.send(r, auth=TokenFirst())):  # fmt: skip
                request = fast.build_request("GET", f"{token_url.rsplit('/', 1)[0]}/data")
                started = time.monotonic()
                with pytest.raises(httpx.ReadTimeout):
                    sender(request)
                assert time.monotonic() - started < 5
    finally:
        silent.close()


@pytest.mark.parametrize(
    ("first", "reused"),
    [
        (answer(b"{}", "Connection: close"), False),
        (answer(b"{}", "Connection: keep-alive, close"), False),
        (answer(b"{}", status="HTTP/1.0 200 OK"), False),
        (answer(b"{}", "Connection: Keep-Alive", status="HTTP/1.0 200 OK"), True),
        (answer(b"{}", "Keep-Alive: timeout=5", status="HTTP/1.0 200 OK"), True),
        (answer(b"{}") + b"HTTP/1.1 200 OK\r\n", False),  # bytes nobody asked for
    ],
    ids=[
        "close",
        "close-in-a-list",
        "http-1.0",
        "1.0-keep-alive",
        "1.0-keep-alive-header",
        "bytes-past-the-body",
    ],  # fmt: skip
)
def test_when_a_connection_is_kept_for_the_next_request(
    client: httpx.Client, first: bytes, reused: bool
) -> None:
    with ScriptedServer(first, answer(b'{"n": 2}')) as server:
        assert client.get(f"{server.url}/a").json() == {}
        assert client.get(f"{server.url}/b").json() == {"n": 2}
    assert server.connections == (1 if reused else 2)


# --- bodies --------------------------------------------------------------------------------


def test_chunked_bodies_with_extensions_and_trailers(client: httpx.Client) -> None:
    body = chunked(b'{"data": ', b"[1, 2]", b"}", trailer=b"X-Checksum: abc\r\n")
    with ScriptedServer(answer(body, "Transfer-Encoding: chunked"), answer()) as server:
        response = client.get(f"{server.url}/x")
        assert response.json() == {"data": [1, 2]}
        assert client.get(f"{server.url}/x").json() == {}  # the same connection, in step
    assert server.connections == 1


def test_transfer_encoding_wins_over_content_length(client: httpx.Client) -> None:
    body = chunked(b"[1]")
    first = answer(body, "Transfer-Encoding: chunked", "Content-Length: 2")
    with ScriptedServer(first, answer()) as server:
        assert client.get(f"{server.url}/x").json() == [1]
        assert client.get(f"{server.url}/x").json() == {}
    assert server.connections == 1


def test_large_bodies_span_many_socket_reads(client: httpx.Client) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB
    pieces = (big[:300_000], big[300_000:300_001], big[300_001:])
    with ScriptedServer(answer(big), answer(chunked(*pieces), "Transfer-Encoding: chunked")) as s:
        assert client.get(f"{s.url}/fixed").content == big
        assert client.get(f"{s.url}/chunked").content == big
    assert s.connections == 1


def test_a_body_without_length_runs_to_the_close(client: httpx.Client) -> None:
    with ScriptedServer(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", answer(),
        close_after=frozenset({0}),
    ) as server:  # fmt: skip
        assert client.get(f"{server.url}/x").text == "until the end"
        assert client.get(f"{server.url}/x").json() == {}
    assert server.connections == 2


def test_no_body_after_head_204_304_and_1xx_answers_are_skipped(client: httpx.Client) -> None:
    informational = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel="preload"\r\n\r\n'
    )
    with ScriptedServer(
        answer(b"", "Content-Length: 1000"),  # answers a HEAD: the length of a GET's body
        answer(b"", status="HTTP/1.1 204 No Content"),
        answer(b"", "Content-Length: 7", status="HTTP/1.1 304 Not Modified"),
        informational + answer(b'{"final": true}'),
    ) as server:
        head = client.head(f"{server.url}/x")
        assert (head.status_code, head.content, head.headers["content-length"]) == (
            200,
            b"",
            "1000",
        )
        assert client.get(f"{server.url}/x").status_code == 204
        assert client.get(f"{server.url}/x").status_code == 304
        assert client.get(f"{server.url}/x").json() == {"final": True}
    assert server.connections == 1  # each answer ended where its head said


def test_bare_lf_folded_headers_and_a_status_without_reason(client: httpx.Client) -> None:
    first = b"HTTP/1.1 200\nX-Folded: one\n  two\nContent-Length: 2\n\nok"
    with ScriptedServer(first, answer()) as server:
        response = client.get(f"{server.url}/x")
        assert response.headers["x-folded"] == "one two" and response.text == "ok"
        assert response.reason_phrase == ""
        assert client.get(f"{server.url}/x").json() == {}
    assert server.connections == 1


def test_gzip_over_chunked_is_decoded(client: httpx.Client) -> None:
    packed = gzip.compress(b'{"data": [1, 2, 3]}')
    body = chunked(packed[:10], packed[10:])
    headers = ("Transfer-Encoding: chunked", "Content-Encoding: gzip")
    with ScriptedServer(answer(body, *headers)) as server:
        assert client.get(f"{server.url}/x").json() == {"data": [1, 2, 3]}


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"", "without response"),
        (answer(b"0123456789" * 10)[:-90], "IncompleteRead"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10", "closed in the response head"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (answer(b"zz\r\nab\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), "invalid chunk size"),
        (answer(b"2\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), "longer than its size"),
        (answer(b"2\r\nab", "Transfer-Encoding: chunked"), "closed in a chunked body"),
        (answer(b"{}", "X-Huge: " + "h" * 200_000), "over 128 KiB"),
    ],
    ids=[
        "no-answer",
        "cut-body",
        "cut-head",
        "not-http",
        "http-2",
        "bad-chunk-size",
        "long-chunk",
        "cut-chunked",
        "huge-head",
    ],  # fmt: skip
)
def test_malformed_answers_are_remote_protocol_errors(
    client: httpx.Client, reply: bytes, message: str
) -> None:
    with ScriptedServer(reply, answer(), close_after=frozenset({0})) as server:
        with pytest.raises(httpx.RemoteProtocolError, match=message):
            client.get(f"{server.url}/x")
        assert client.get(f"{server.url}/x").json() == {}  # a fresh connection works
    assert server.requests == 2


def test_a_header_that_would_split_the_request_is_never_sent(client: httpx.Client) -> None:
    with ScriptedServer(answer()) as server:
        for name, value in [("X-Note", "a\r\nX-Injected: 1"), ("X-Note", "a\x00"),
                            ("X: Note", "a")]:  # fmt: skip
            with pytest.raises(httpx.LocalProtocolError, match="X") as info:
                client.get(f"{server.url}/x", headers={name: value})
            assert "Injected" not in str(info.value)  # the name is shown, never the value
        assert client.get(f"{server.url}/x").json() == {}
    assert server.requests == 1


# --- send: past httpx.Client's bookkeeping -------------------------------------------------


def test_send_goes_straight_to_our_transport_only_when_httpx_adds_nothing() -> None:
    with build_client() as plain:
        assert isinstance(_direct_transport(plain), StdlibTransport)
    assert _direct_transport(plain) is None  # closed: httpx.Client.send raises its own error
    with build_client() as hooked:
        hooked.event_hooks["request"].append(lambda request: None)
        assert _direct_transport(hooked) is None
    with build_client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as mocked:
        assert _direct_transport(mocked) is None
    proxy = httpx.HTTPTransport(proxy="http://127.0.0.1:9")
    with httpx.Client(transport=StdlibTransport(), mounts={"https://": proxy}) as mounted:
        assert _direct_transport(mounted) is None


def test_send_drives_the_auth_flow_and_keeps_cookies(client: httpx.Client) -> None:
    class RetryOnce(httpx.Auth):
        def auth_flow(
            self, request: httpx.Request
        ) -> Generator[httpx.Request, httpx.Response, None]:
            request.headers["X-Try"] = "1"
            response = yield request
            if response.status_code == 401:
                request.headers["X-Try"] = "2"
                yield request

    refused = answer(b"{}", "Set-Cookie: sid=abc; Path=/", status="HTTP/1.1 401 Unauthorized")
    with ScriptedServer(refused, answer(b'{"ok": 1}'), answer(b'{"ok": 2}')) as server:
        first = send(client, client.build_request("GET", f"{server.url}/x"), RetryOnce())
        second = send(client, client.build_request("GET", f"{server.url}/y"), None)
    assert (first.json(), second.json()) == ({"ok": 1}, {"ok": 2})
    tries = [next(line for line in h.split(b"\r\n") if b"X-Try" in line) for h in server.heads[:2]]
    assert tries == [b"X-Try: 1", b"X-Try: 2"]
    # as with httpx.Client.send: the jar signs requests built after the cookie was set
    assert b"Cookie" not in server.heads[1] and b"Cookie: sid=abc" in server.heads[2]


def test_send_through_a_client_with_event_hooks_calls_them(client: httpx.Client) -> None:
    seen: list[str] = []
    client.event_hooks["response"].append(lambda response: seen.append(response.url.path))
    with ScriptedServer(answer()) as server:
        assert send(client, client.build_request("GET", f"{server.url}/hooked"), None).json() == {}
    assert seen == ["/hooked"]


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"


def test_https_keeps_alive_and_checks_the_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    big = bytes(range(256)) * 2048  # 512 KiB: many TLS records
    answers = (answer(big), answer(chunked(big[:1000], big[1000:]), "Transfer-Encoding: chunked"))
    with ScriptedServer(*answers, tls=server_side) as server:
        transport = StdlibTransport(ssl_context=trusting)
        with build_client(read_timeout=5.0, transport=transport) as client:
            assert client.get(f"{server.url}/a").content == big
            assert client.get(f"{server.url}/b").content == big
    assert server.connections == 1
    with (
        ScriptedServer(answer(), tls=server_side) as server,
        build_client() as default,  # the system's CAs do not know this certificate
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        default.get(f"{server.url}/x")


# --- bounds: the request deadline, the body cap, bounded decoding --------------------------


class DripServer(RawServer):
    """Answers each request with `at_once`, then `dripped` a byte every `pause` seconds
    until the client hangs up: the answer is always on its way, never late by the read
    timeout."""

    def __init__(self, at_once: bytes, dripped: bytes, pause: float = 0.05) -> None:
        super().__init__(per_connection=1)
        self.at_once, self.dripped, self.pause = at_once, dripped, pause

    def _serve(self) -> None:
        while (conn := self._accept()) is not None:
            with conn, conn.makefile("rb") as reader:
                if _read_head(reader):
                    self.requests += 1
                    try:
                        conn.sendall(self.at_once)
                        for byte in self.dripped:
                            conn.sendall(bytes([byte]))
                            time.sleep(self.pause)
                    except OSError:
                        pass


def bounded(**limits: Any) -> httpx.Client:
    return build_client(read_timeout=5.0, limits=ResponseLimits(**limits))


@pytest.mark.parametrize("dripped", ["head", "body"])
def test_a_response_dripped_byte_by_byte_ends_at_the_deadline(dripped: str) -> None:
    head, body = b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n", b"x" * 200
    at_once, drip = (b"", head + body) if dripped == "head" else (head, body)
    with DripServer(at_once, drip) as server, bounded(deadline=0.4) as client:
        request = client.build_request("GET", f"{server.url}/x")
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            client.send(request)
    assert 0.35 < time.monotonic() - started < 2
    assert not info.value.caller and info.value.request is request
    assert "request deadline of 0.4 s (RAWQUERY_REQUEST_DEADLINE_SECONDS)" in str(info.value)


def test_the_callers_instant_ends_a_request_sooner() -> None:
    with DripServer(b"", answer(b"x" * 100)) as server, bounded(deadline=30) as client:
        request = client.build_request(
            "GET", f"{server.url}/x", extensions={NOT_AFTER: time.monotonic() + 0.3}
        )
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            client.send(request)
    assert info.value.caller and time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000000000\r\n\r\n{", "declares a body of"),
        (answer(chunked(b"x" * 600, b"y" * 600), "Transfer-Encoding: chunked"), "over the limit"),
        (answer(b"FFFFFFFFFFFFFFFF\r\n", "Transfer-Encoding: chunked"), "over the limit"),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"z" * 1500, "over the limit"),
        (answer(gzip.compress(bytes(5000)), "Content-Encoding: gzip"), "decompresses (gzip)"),
        (answer(zlib.compress(bytes(5000)), "Content-Encoding: deflate"), "(deflate)"),
    ],
    ids=["content-length", "chunked", "huge-chunk", "until-close", "gzip", "deflate"],
)
def test_a_body_over_the_cap_fails_as_it_passes_it(reply: bytes, message: str) -> None:
    scripted = ScriptedServer(reply, answer(), close_after=frozenset({0}))
    with scripted as server, bounded(max_bytes=1000) as client:
        with pytest.raises(ResponseTooLarge, match=re.escape(message)) as info:
            client.get(f"{server.url}/x")
        assert "RAWQUERY_MAX_RESPONSE_BYTES=1000" in str(info.value)
        assert client.get(f"{server.url}/x").json() == {}  # a fresh connection works


def test_content_codings_are_decoded_under_the_cap() -> None:
    data = b'{"data": [1, 2, 3]}' * 40  # 760 bytes, under the cap of 1000
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    encoded = [
        ("gzip", gzip.compress(data)),
        ("deflate", zlib.compress(data)),
        ("deflate", raw_deflate.compress(data) + raw_deflate.flush()),  # as some servers do
        ("gzip, identity", gzip.compress(data)),
        ("deflate, gzip", gzip.compress(zlib.compress(data))),  # applied in order
        ("x-unknown", data),  # skipped, as httpx does
    ]
    if zstandard is not None:
        encoded.append(("zstd", zstandard.ZstdCompressor().compress(data)))
    answers = [answer(body, f"Content-Encoding: {coding}") for coding, body in encoded]
    with ScriptedServer(*answers) as server, bounded(max_bytes=1000) as client:
        for coding, _ in encoded:
            response = client.get(f"{server.url}/x")
            assert response.content == data, coding
            assert "content-encoding" not in response.headers  # httpx must not decode again


def test_a_gzip_bomb_is_stopped_a_step_past_the_cap() -> None:
    bomb = gzip.compress(bytes(64 << 20), compresslevel=9)  # 64 MiB of zeros in ~64 KB
    scripted = ScriptedServer(answer(bomb, "Content-Encoding: gzip"))
    with scripted as server, bounded(max_bytes=4 << 20) as client:
        started = time.monotonic()
        with pytest.raises(ResponseTooLarge):
            client.get(f"{server.url}/x")
        assert time.monotonic() - started < 5  # a few steps of inflating, not 64 MiB more


def test_another_transports_responses_are_bounded_too() -> None:
    """The proxy transports httpx provides are wrapped in BoundedTransport."""
    data = b'{"ok": "' + b"x" * 200 + b'"}'  # 211 bytes, 38 packed
    packed = httpx.MockTransport(
        lambda request: httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, content=gzip.compress(data)
        )
    )
    with httpx.Client(transport=BoundedTransport(packed, ResponseLimits(max_bytes=300))) as c:
        response = c.get("http://api.example/x")
        assert response.content == data and "content-encoding" not in response.headers
    tight = BoundedTransport(packed, ResponseLimits(max_bytes=100))
    with httpx.Client(transport=tight) as c, pytest.raises(ResponseTooLarge, match="decomp"):
        c.get("http://api.example/x")
    later = httpx.MockTransport(lambda request: httpx.Response(200, content=data))
    transport = BoundedTransport(later, ResponseLimits(deadline=10))
    with httpx.Client(transport=transport) as c, pytest.raises(DeadlineExceeded):
        c.get("http://api.example/x", extensions={NOT_AFTER: time.monotonic() - 1})
