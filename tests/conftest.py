from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rawquery_workers.settings import reset_settings
from tests.support.api_server import ApiServer
from tests.support.redis_server import RedisServer, redis_server_binary

POSTGRES_URL = os.environ.get(
    "RAWQUERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


def _private_redis() -> RedisServer:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not on PATH")
    return RedisServer()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for one test: free to stop, kill or restart."""
    with _private_redis() as server:
        yield server


@pytest.fixture(scope="session")
def shared_redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the session: do not stop it; use fresh keys per test."""
    with _private_redis() as server:
        yield server


@pytest.fixture
def rq_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private RAWQUERY_HOME with embedded defaults; no Redis."""
    home = tmp_path / "rqhome"
    monkeypatch.setenv("RAWQUERY_HOME", str(home))
    for name in (
        "RAWQUERY_CATALOG_URI",
        "RAWQUERY_WAREHOUSE",
        "RAWQUERY_REDIS_URL",
        "RAWQUERY_SECRET_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    reset_settings()
    yield home
    reset_settings()
