"""The production configuration end to end: PostgreSQL catalog and registry, an s3://
warehouse on a local S3 stand-in, and the real `rq` CLI in subprocesses; once embedded,
once distributed on two real Celery worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from rawquery_workers.cli.demo_cmd import demo_spec
from rawquery_workers.demo.sample_api import DEMO_TOKEN, SampleApi
from tests.production.conftest import WAREHOUSE_PREFIX, Production
from tests.support import s3_server as s3
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.postgres

RQ = str(Path(sys.executable).with_name("rq"))


class Operator:
    """Runs `rq` as an operator would; the S3 secret must never show in what it prints."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def rq(self, *args: str) -> str:
        done = subprocess.run(
            [RQ, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=240
        )
        shown = done.stdout + done.stderr
        assert s3.SECRET_ACCESS_KEY not in shown
        assert done.returncode == 0, f"rq {' '.join(args)} -> {done.returncode}\n{shown}"
        return done.stdout

    def query(self, sql: str) -> list[dict[str, Any]]:
        return json.loads(self.rq("query", sql, "--format", "json"))

    def counts(self, name: str) -> tuple[int, int, int]:
        row = self.query(
            f"SELECT (SELECT count(*) FROM {name}.orders) AS orders, "
            f"(SELECT count(*) FROM {name}.customers) AS customers, "
            f"(SELECT count(*) FROM {name}.orders_line_items) AS items"
        )[0]
        return row["orders"], row["customers"], row["items"]


def test_embedded_sync_to_s3_with_postgres_catalog(production: Production, tmp_path: Path) -> None:
    name = f"shop_{uuid.uuid4().hex[:8]}"
    sync_add_update_and_refresh(Operator(production.env, tmp_path), name, tmp_path)
    assert_tables_live_in_s3(production, name)


@pytest.mark.distributed
@pytest.mark.redis
def test_distributed_sync_on_two_workers_to_s3_with_postgres_catalog(
    production: Production,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.distributed.conftest import Dist, Workers

    monkeypatch.chdir(tmp_path)  # workers read a .env of their working folder
    env = {
        **production.env,
        "RAWQUERY_REDIS_URL": redis_server.url,
        "RAWQUERY_SEGMENT_RECORDS": "40",  # several segments (and tasks) per stream
        "PYTHONUNBUFFERED": "1",
    }
    home = Path(env["RAWQUERY_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    pool = Workers(Dist(home, redis_server, env))
    try:
        started = pool.start(2)
        name = f"shop_{uuid.uuid4().hex[:8]}"
        sync_add_update_and_refresh(Operator(env, tmp_path), name, tmp_path)
        logs = "".join(worker.log.read_text() for worker in started)
    finally:
        pool.stop_all()
    assert "succeeded" in logs  # the tasks ran on the workers, not in the CLI
    assert s3.SECRET_ACCESS_KEY not in logs
    assert_tables_live_in_s3(production, name)


def sync_add_update_and_refresh(op: Operator, name: str, tmp_path: Path) -> None:
    """First sync, an incremental update, a full refresh; the tables read back each time."""
    with SampleApi(orders=120, customers=15) as api:
        spec = tmp_path / "shop.json"
        spec.write_text(json.dumps(demo_spec(api.url)))
        op.rq("connect", name, "--spec", str(spec), "--auth-token", DEMO_TOKEN)
        op.rq("connections", "sync", name)
        assert op.counts(name) == (120, 15, _items(api))

        # An incremental sync: the changed order replaces its old version (a copy-on-write
        # delete that reads and rewrites Parquet files in the bucket).
        api.orders[0]["status"] = "changed"
        api.orders[0]["updated_at"] = "2030-01-01T00:00:00+00:00"
        op.rq("connections", "sync", name, "--stream", "orders")
        assert op.query(f"SELECT status FROM {name}.orders WHERE id = 1") == [{"status": "changed"}]
        assert op.counts(name) == (120, 15, _items(api))

        # A full refresh stages the whole stream in the bucket and swaps it in.
        del api.orders[100:]
        op.rq("connections", "sync", name, "--full-refresh")
        assert op.counts(name) == (100, 15, _items(api))

    status = json.loads(op.rq("connections", "status", name, "--json"))
    assert {s["name"]: s["status"] for s in status["streams"]} == {
        "orders": "succeeded",
        "customers": "succeeded",
    }


def _items(api: SampleApi) -> int:
    return sum(len(order["line_items"]) for order in api.orders)


def assert_tables_live_in_s3(production: Production, name: str) -> None:
    """The catalog (in the private PostgreSQL schema) points into the bucket, whose
    staging area is empty once the syncs are over."""
    engine = create_engine(production.catalog_uri)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT table_name, metadata_location FROM iceberg_tables "
                    "WHERE table_namespace = :ns"
                ),
                {"ns": name},
            ).all()
            registered = conn.execute(
                text("SELECT count(*) FROM rq_connections WHERE name = :n"), {"n": name}
            ).scalar_one()
    finally:
        engine.dispose()
    assert registered == 1
    assert {row.table_name for row in rows} == {"orders", "orders_line_items", "customers"}
    assert all(row.metadata_location.startswith(f"{production.warehouse}/") for row in rows)
    keys = production.s3.keys(production.bucket, f"{WAREHOUSE_PREFIX}/")
    assert any(key.endswith(".parquet") for key in keys)
    assert any(key.endswith(".metadata.json") for key in keys)
    # Only the empty directory marker pyarrow leaves for `_rq_staging/` may stay.
    assert not [key for key in keys if "/_rq_staging/" in key and not key.endswith("/")]
