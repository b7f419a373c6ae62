"""`rq query` reads the lake, not the disk: DuckDB's file (and network) access is off once
the tables are registered, and no SQL can turn it back on; `--allow-files` opts in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rawquery_workers.cli.demo_cmd import demo_spec
from rawquery_workers.demo.sample_api import SampleApi
from tests.e2e.helpers import Cli

TOKEN = "CANARY-bearer-query-5d1e"


@pytest.fixture
def shop() -> Iterator[SampleApi]:
    with SampleApi(orders=5, customers=2, token=TOKEN) as api:
        yield api


@pytest.fixture
def synced(cli: Cli, shop: SampleApi, write_spec: Callable[..., Path], rq_home: Path) -> Path:
    """A synced connection `shop` (so RAWQUERY_HOME holds secret.key); returns the key file."""
    spec = write_spec(demo_spec(shop.url), "shop.json")
    assert cli("connect", "shop", "--spec", str(spec), "--auth-token", TOKEN).code == 0
    assert cli("connections", "sync", "shop").code == 0
    key_file = rq_home / "secret.key"
    assert key_file.read_text().strip()
    return key_file


def test_sql_cannot_read_the_encryption_key(cli: Cli, synced: Path) -> None:
    key = synced.read_text().strip()
    for sql in (
        f"SELECT content FROM read_text('{synced}')",
        f"SELECT * FROM read_csv('{synced}', header=false)",
        f"SET enable_external_access = true; SELECT content FROM read_text('{synced}')",
        f"RESET lock_configuration; SELECT content FROM read_text('{synced}')",
        f"SELECT o.id, k.content FROM shop.orders o, read_text('{synced}') k",
    ):
        result = cli("query", sql, "--format", "json")
        assert result.code == 2, (sql, result.out)
        assert key not in result.out + result.err, sql
    assert "--allow-files" in result.err
    assert "Traceback" not in result.err


def test_sql_cannot_write_files(cli: Cli, synced: Path, tmp_path: Path) -> None:
    out = tmp_path / "dump.csv"
    for sql in (
        f"COPY (SELECT * FROM shop.orders) TO '{out}'",
        f"ATTACH '{out}' AS x",
        f"EXPORT DATABASE '{tmp_path / 'export'}'",
    ):
        result = cli("query", sql)
        assert result.code == 2, (sql, result.out)
    assert not out.exists() and not (tmp_path / "export").exists()


def test_tables_still_read_and_allow_files_opts_in(
    cli: Cli, synced: Path, shop: SampleApi, tmp_path: Path
) -> None:
    result = cli("query", "SELECT * FROM shop.orders ORDER BY id", "--format", "json")
    assert result.code == 0, result.err
    assert [row["id"] for row in result.json()] == sorted(o["id"] for o in shop.orders)
    opened = cli("query", f"SELECT content FROM read_text('{synced}')", "--allow-files")
    assert opened.code == 0 and synced.read_text().strip() in opened.out
    out = tmp_path / "ids.csv"
    assert cli("query", f"COPY (SELECT id FROM shop.orders) TO '{out}'", "--allow-files").code == 0
    assert out.read_text().splitlines()[0] == "id"
    assert "--allow-files" in cli("query", "--help").out
