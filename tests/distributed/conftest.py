"""Fixtures for the distributed suite: a private Redis, real worker subprocesses, a real API.

dist            environment for one test (tmp RAWQUERY_HOME, SQLite catalog, Redis URL,
                secret key), applied to this process too; `dist.env` for subprocesses
workers         `workers.start(2)` spawns `celery -A rawquery_workers worker` processes
                and waits (bounded) until each answers a control ping
shop            a real HTTP API (tests/support/api_server.py) serving offset-paginated
                streams whose rows carry a canary value; a bearer token canary
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from celery import Celery
from cryptography.fernet import Fernet

from rawquery_workers.registry import open_registry
from rawquery_workers.settings import reset_settings
from rawquery_workers.spec.credentials import Credentials
from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.polling import wait_for
from tests.support.redis_server import RedisServer

TOKEN = "tok-CANARY-5f1e2d3c4b"  # the credential that must never reach Redis
VALUE = "val-CANARY-9a8b7c6d"  # a record value that must never reach Redis
RQ = str(Path(sys.executable).parent / "rq")
READY_SECONDS = 60.0


@dataclass
class Dist:
    home: Path
    redis: RedisServer
    env: dict[str, str]

    def rq(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RQ, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def rq_background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [RQ, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def connect(self, name: str, spec: dict[str, Any], schedule: str | None = None) -> None:
        open_registry().create_connection(name, spec, Credentials(token=TOKEN), schedule)

    def status(self, name: str) -> dict[str, Any]:
        done = self.rq("connections", "status", name, "--json")
        assert done.returncode == 0, done.stderr
        return {s["name"]: s for s in orjson.loads(done.stdout)["streams"]}

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)


@pytest.fixture
def dist(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Dist]:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "RAWQUERY_HOME": str(home),
        "RAWQUERY_CATALOG_URI": f"sqlite:///{home / 'catalog.db'}",
        "RAWQUERY_WAREHOUSE": (tmp_path / "warehouse").as_uri(),
        "RAWQUERY_REDIS_URL": redis_server.url,
        "RAWQUERY_SECRET_KEY": Fernet.generate_key().decode(),
        "RAWQUERY_SEGMENT_RECORDS": "20",
    }
    (tmp_path / "warehouse").mkdir()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    reset_settings()
    full = {k: v for k, v in os.environ.items() if not k.startswith("RAWQUERY_")}
    yield Dist(home, redis_server, {**full, **env, "PYTHONUNBUFFERED": "1"})
    reset_settings()


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def node(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []


@dataclass
class Workers:
    dist: Dist
    extra_env: dict[str, str] = field(default_factory=dict)
    running: list[Worker] = field(default_factory=list)
    started: int = 0

    def start(self, count: int = 1, **env: str) -> list[Worker]:
        new = [self._spawn(env) for _ in range(count)]
        for worker in new:
            self.wait_ready(worker)
        return new

    def command(self, name: str) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "rawquery_workers", "worker",
            "--concurrency", "1", "-P", "prefork", "-n", f"{name}@%h",
            "--without-gossip", "--without-mingle", "-l", "INFO",
        ]  # fmt: skip

    def own_env(self) -> dict[str, str]:
        return {}

    def _spawn(self, env: dict[str, str]) -> Worker:
        self.started += 1
        name = f"w{self.started}"
        log = self.dist.home / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                self.command(name),
                env={**self.dist.env, **self.extra_env, **self.own_env(), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(name, process, log)
        self.running.append(worker)
        return worker

    def wait_ready(self, worker: Worker) -> None:
        probe = Celery("probe", broker=self.dist.redis.url)

        def ready() -> bool:
            if worker.process.poll() is not None:
                raise AssertionError(f"{worker.name} exited:\n{worker.log.read_text()[-3000:]}")
            try:
                return bool(probe.control.ping(destination=[worker.node], timeout=0.5))
            except Exception:  # Redis restarting: ask again
                return False

        try:
            wait_for(ready, READY_SECONDS, f"worker {worker.name} to answer ping", every=0.2)
        finally:
            probe.close()

    def supervise(self) -> list[Worker]:
        """Like a process supervisor: replace workers that died; returns the new ones."""
        dead = [w for w in self.running if w.process.poll() is not None]
        for worker in dead:
            self.running.remove(worker)
        return self.start(len(dead)) if dead else []

    def stop_all(self) -> None:
        for worker in self.running:
            if worker.process.poll() is None:
                os.killpg(worker.process.pid, signal.SIGTERM)
        for worker in self.running:
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.process.pid, signal.SIGKILL)
                worker.process.wait()
        for worker in self.running:  # a SIGKILLed pool child's orphans, if any
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGKILL)
        self.running.clear()


@pytest.fixture
def workers(dist: Dist) -> Iterator[Workers]:
    pool = Workers(dist)
    yield pool
    pool.stop_all()


# --- the API ------------------------------------------------------------------------------------


def make_rows(stream: str, count: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"{stream} {i}", "secret_note": VALUE if i % 7 == 0 else f"n{i}"}
        for i in range(1, count + 1)
    ]


@dataclass
class Shop:
    """An API with one offset-paginated endpoint per stream; hooks change one page's reply."""

    server: ApiServer
    rows: dict[str, list[dict[str, Any]]]
    hooks: dict[str, Callable[[RecordedRequest, int], Reply | None]] = field(default_factory=dict)
    bearer: bool = True  # check the canary bearer token (off: a hook checks auth)

    def add(self, stream: str, count: int) -> None:
        self.rows[stream] = make_rows(stream, count)

        def handler(request: RecordedRequest) -> Reply:
            if self.bearer and request.header("authorization") != f"Bearer {TOKEN}":
                return Reply({"error": "bad token"}, 401)
            offset = int(request.params.get("offset", 0))
            hook = self.hooks.get(stream)
            reply = hook(request, offset) if hook else None
            if reply is not None:
                return reply
            limit = int(request.params.get("limit", 10))
            return Reply({"data": self.rows[stream][offset : offset + limit]})

        self.server.route(f"/{stream}", handler)

    def spec(self, streams: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "version": "1",
            "base_url": self.server.url,
            "auth": {"type": "bearer"},
            **extra,
            "streams": [
                {
                    "name": name,
                    "endpoint": f"/{name}",
                    "data_path": "data",
                    "primary_key": ["id"],
                    "pagination": {"type": "offset", "page_size": 10},
                }
                for name in (streams or list(self.rows))
            ],
        }


@pytest.fixture
def shop() -> Iterator[Shop]:
    with ApiServer() as server:
        yield Shop(server, {})


def table_ids(connection: str, stream: str) -> list[int]:
    from rawquery_workers.settings import get_settings
    from rawquery_workers.sink import open_sink

    table = open_sink(get_settings()).scan_arrow(connection, stream).read_all()
    return sorted(table.column("id").to_pylist())


# --- reading everything in Redis ----------------------------------------------------------------


def redis_dump(client: redis.Redis) -> bytes:
    """Every key and value in the database (all types), with base64 message bodies decoded."""
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "hash":
            values = [b for kv in client.hgetall(key).items() for b in kv]
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        else:
            values = [kind.encode()]
        for value in values:
            parts.append(value)
            parts.extend(_decoded_bodies(value))
    return b"\n".join(parts)


def _decoded_bodies(value: bytes) -> list[bytes]:
    try:
        message = orjson.loads(value)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(message, dict) or not isinstance(message.get("body"), str):
        return []
    try:
        return [base64.b64decode(message["body"])]
    except ValueError:
        return []
