"""A private `redis-server` on 127.0.0.1 for tests: nothing on disk, one process per instance.

    with RedisServer() as server:   # free port, waits until it answers PING
        server.url                  # "redis://127.0.0.1:PORT/0"
        server.restart()            # stop, then start again on the same port (data is gone)
        server.kill()               # SIGKILL, like a crashed host; `start()` brings it back

The server runs with `--save "" --appendonly no` in a temporary folder, so a restart loses
every key: exactly the failure the rate limiter and the locks must survive.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

READY_TIMEOUT = 10.0


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One `redis-server` process; `port` stays the same across `restart()`."""

    def __init__(self, port: int | None = None, *, persistent: bool = False) -> None:
        """`persistent`: an append-only file fsynced on every write, so a restart (even
        after a SIGKILL) keeps every key, as a production Redis with AOF does."""
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not on PATH; install it to run these tests")
        self._binary = binary
        self._fixed_port = port is not None
        self.port = port if port is not None else _free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="rq-redis-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._persistent = persistent

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        """Start and wait until PING answers; a first start retries on a port taken meanwhile."""
        if self.running:
            return self
        for _attempt in range(3):
            if self._launch():
                return self
            if self._fixed_port:
                break
            self.port = _free_port()
        log = (self._dir / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")

    def _launch(self) -> bool:
        command = [
            self._binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self._persistent else "no",
            "--appendfsync", "always",
            "--dir", str(self._dir),
            "--logfile", str(self._dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        # Readiness poll: the server accepts commands only once it has loaded and bound.
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if _answers_ping(self.port):
                self._process = process
                return True
            time.sleep(0.02)
        process.kill()
        process.wait()
        return False

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM) and wait for the process to exit."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as a crashed machine would; clients see reset connections."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start again on the same port; every key is lost (no persistence)."""
        self.stop()
        self._fixed_port = True
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def forget(self) -> None:
        """Delete what a persistent server keeps on disk: its next start is empty, as a
        Redis without persistence comes back."""
        for path in self._dir.iterdir():
            if path.name != "redis.log":
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
