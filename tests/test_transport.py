"""StdlibTransport against real sockets on 127.0.0.1: keep-alive reuse, a kept-alive
connection the server closed while idle, and failures as httpx's exception types."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from rawquery_workers.http import build_client


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

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.stopping:
                conn.close()
                return
            self.connections += 1
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


def _read_request(reader: object) -> bool:
    lines = 0
    while True:
        line = reader.readline()  # type: ignore[attr-defined]
        if not line:
            return False
        lines += 1
        if line in (b"\r\n", b"\n"):
            return lines > 1


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with build_client(read_timeout=5.0) as http:
        yield http


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
