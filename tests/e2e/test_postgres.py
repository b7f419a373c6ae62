"""The CLI end to end on a PostgreSQL catalog + registry (a private schema, dropped after)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from rawquery_workers.cli.demo_cmd import demo_spec
from rawquery_workers.demo.sample_api import SampleApi
from rawquery_workers.registry import dispose_engines
from rawquery_workers.settings import reset_settings
from tests.conftest import POSTGRES_URL
from tests.e2e.helpers import Cli, files_containing, rows, status_streams

TOKEN = "CANARY-pg-bearer-5e8d"

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_schema(rq_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """RAWQUERY_CATALOG_URI pointing at a fresh schema of the test PostgreSQL server."""
    admin = create_engine(POSTGRES_URL)
    schema = f"rqe2e_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - no server: skip, as the other postgres tests do
        admin.dispose()
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable: {type(exc).__name__}")
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    monkeypatch.setenv("RAWQUERY_CATALOG_URI", url.render_as_string(hide_password=False))
    reset_settings()
    try:
        yield schema
    finally:
        dispose_engines()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _dump_schema(schema: str) -> str:
    """Every value of every table in the schema, as text."""
    engine = create_engine(POSTGRES_URL)
    parts: list[str] = []
    with engine.connect() as conn:
        tables = conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": schema},
        ).scalars()
        for table in list(tables):
            for row in conn.execute(text(f'SELECT * FROM "{schema}"."{table}"')):
                parts += [
                    bytes(v).decode("latin-1") if isinstance(v, memoryview) else str(v) for v in row
                ]
    engine.dispose()
    return "\n".join(parts)


def test_connect_sync_query_on_a_postgresql_catalog(
    cli: Cli, pg_schema: str, rq_home: Path, write_spec: Callable[..., Path]
) -> None:
    with SampleApi(orders=17, customers=5, token=TOKEN) as api:
        spec = write_spec(demo_spec(api.url))
        result = cli("connect", "pg-shop", "--spec", str(spec), "--auth-token", TOKEN)
        assert result.code == 0, result.err
        result = cli("connections", "sync", "pg-shop")
        assert result.code == 0, result.out + result.err
        orders = api.orders
    streams = status_streams(cli, "pg-shop")
    assert streams["orders"]["rows"] == 17 and streams["customers"]["rows"] == 5

    result = cli("query", "SELECT id, status FROM pg-shop.orders ORDER BY id", "--format", "json")
    assert result.code == 0, result.err
    assert result.json() == [{"id": o["id"], "status": o["status"]} for o in orders]
    items = rows("pg-shop", "orders_line_items")
    assert len(items) == sum(len(o["line_items"]) for o in orders)

    engine = create_engine(POSTGRES_URL)
    with engine.connect() as conn:
        names = set(
            conn.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": pg_schema},
            ).scalars()
        )
        assert {"rq_connections", "rq_credentials", "rq_syncs", "rq_stream_runs"} <= names
        assert "iceberg_tables" in names
        iceberg = set(
            conn.execute(
                text(
                    f'SELECT table_namespace, table_name FROM "{pg_schema}".iceberg_tables '
                    "WHERE catalog_name = 'rawquery'"
                )
            ).all()
        )
    engine.dispose()
    assert iceberg == {
        ("pg-shop", "orders"),
        ("pg-shop", "orders_line_items"),
        ("pg-shop", "customers"),
    }
    assert not (rq_home / "catalog.db").exists()

    dump = _dump_schema(pg_schema)
    assert "pg-shop" in dump and TOKEN not in dump
    assert files_containing(rq_home, [TOKEN]) == []

    result = cli("connections", "delete", "pg-shop", "--drop-tables")
    assert result.code == 0, result.err
    assert cli("connections", "list", "--json").json() == []
