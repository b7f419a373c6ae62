"""Item 3 (embedded): the warehouse disk fills up while a data file is written, and the
PostgreSQL catalog refuses connections for a few seconds during a sync. Each gives a clear
error (or recovers), and the next sync is exact."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from rawquery_workers.sink import close_catalogs
from tests.conftest import POSTGRES_URL
from tests.reliability.support import (
    FakeApi,
    assert_exact,
    items_spec,
    make_records,
    rq,
    table_rows,
    write_json,
)
from tests.reliability.tally import TALLY
from tests.support.api_server import ApiServer

pytestmark = pytest.mark.reliability


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        close_catalogs()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _status(name: str) -> dict[str, dict]:
    out = rq("connections", "status", name, "--json").out
    return {s["name"]: s for s in orjson.loads(out)["streams"]}


def test_disk_full_while_writing(
    small_disk: Path, rq_home: Path, api_server: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAWQUERY_WAREHOUSE", small_disk.as_uri())
    small = make_records(20)
    big = make_records(3000, payload=2400, seed=7)  # ~3.6 MB once compressed
    api_server.route("/small", FakeApi(small).handler)
    api_server.route("/big", FakeApi(big).handler)
    spec = items_spec(api_server.url, streams=("small", "big"), page_size=500, incremental=False)
    write_json(rq_home.parent / "spec.json", spec)
    assert rq("connect", "disk", "--spec", "spec.json").code == 0
    TALLY.faults_injected += 1
    first = rq("connections", "sync", "disk")
    assert first.code == 1, first.text
    assert "Traceback" not in first.text
    status = _status("disk")
    assert status["small"]["status"] == "succeeded"
    error = status["big"]["error"]
    assert status["big"]["status"] == "failed"
    assert "No space left" in error or "space" in error.lower(), error
    assert "internal error" not in error, error
    assert_exact("disk", "small", small)
    # Nothing partial: whatever big has is whole committed segments, never a torn file.
    table_rows("disk", "big")

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    second = rq("connections", "sync", "disk")
    assert second.code == 0, second.text
    assert_exact("disk", "big", big)
    assert_exact("disk", "small", small)


class FlakyProxy:
    """A TCP proxy on 127.0.0.1 in front of PostgreSQL that can refuse for a while."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.refusing_until = 0.0
        self.refused = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.live: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def outage(self, seconds: float) -> None:
        self.refusing_until = time.monotonic() + seconds
        for conn in list(self.live):  # reset the open sessions too
            with contextlib.suppress(OSError):
                conn.close()
        self.live.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if time.monotonic() < self.refusing_until:
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self.live += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self.server.close()
        self.outage(0)


@pytest.fixture
def pg_proxy_uri() -> Iterator[tuple[str, FlakyProxy]]:
    admin = create_engine(POSTGRES_URL)
    try:
        admin.connect().close()
    except OperationalError:
        admin.dispose()
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    schema = f"rqrel_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL)
    proxy = FlakyProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).update_query_dict(
        {"options": f"-csearch_path={schema}", "connect_timeout": "3"}
    )
    try:
        yield proxied.render_as_string(hide_password=False), proxy
    finally:
        close_catalogs()
        proxy.close()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.postgres
def test_postgres_refuses_during_sync(
    pg_proxy_uri: tuple[str, FlakyProxy],
    rq_home: Path,
    api_server: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri, proxy = pg_proxy_uri
    monkeypatch.setenv("RAWQUERY_CATALOG_URI", uri)
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "10")
    records = make_records(60)
    api = FakeApi(records)
    api_server.route("/items", api.handler)
    write_json(rq_home.parent / "spec.json", items_spec(api_server.url, page_size=5))
    assert rq("connect", "pgflaky", "--spec", "spec.json").code == 0
    # Page 4 is fetched just before segment 1 commits: the outage covers that commit.
    api.on_page = lambda n: proxy.outage(3.0) if n == 4 else None
    TALLY.faults_injected += 1
    first = rq("connections", "sync", "pgflaky")
    api.on_page = None
    assert "Traceback" not in first.text, first.text
    assert proxy.refused > 0
    if first.code != 0:
        assert first.code in (1, 2), first.text
        assert "internal error" not in first.text, first.text
        assert "database" in first.text or "catalog" in first.text, first.text
    close_catalogs()
    # The database is back once the outage the test scheduled is over.
    time.sleep(max(0.0, proxy.refusing_until - time.monotonic()))
    second = rq("connections", "sync", "pgflaky")
    assert second.code == 0, second.text
    assert_exact("pgflaky", "items", records)
