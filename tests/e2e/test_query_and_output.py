"""Issue items 7 and 8, end to end: `rq query` reads a table any number of times and tells
connections apart by their exact names; `rq connect` refuses a name that differs from an
existing one only in case; tables print data and API messages literally (no Rich markup)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rawquery_workers.cli.demo_cmd import demo_spec
from rawquery_workers.demo.sample_api import SampleApi
from tests.e2e.helpers import Cli
from tests.support.api_server import ApiServer, Reply

TOKEN = "CANARY-query-5b1d"


@pytest.fixture
def shop() -> Iterator[SampleApi]:
    with SampleApi(orders=23, customers=7, token=TOKEN) as api:
        yield api


def _connect_and_sync(cli: Cli, spec: Path, name: str) -> None:
    result = cli("connect", name, "--spec", str(spec), "--auth-token", TOKEN)
    assert result.code == 0, result.err
    result = cli("connections", "sync", name)
    assert result.code == 0, result.out + result.err


def _one_value(cli: Cli, sql: str) -> object:
    result = cli("query", sql, "--format", "json")
    assert result.code == 0, result.err
    [row] = result.json()
    [value] = row.values()
    return value


def test_a_table_read_twice_in_one_query_gives_exact_counts(
    cli: Cli, shop: SampleApi, write_spec: Callable[..., Path]
) -> None:
    _connect_and_sync(cli, write_spec(demo_spec(shop.url)), "shop")
    queries = [
        "SELECT count(*) FROM shop.orders a JOIN shop.orders b ON a.id = b.id",
        "SELECT count(*) FROM shop.orders WHERE id IN (SELECT id FROM shop.orders)",
        "WITH o AS (SELECT * FROM shop.orders) SELECT (SELECT count(*) FROM o) + count(*) FROM o",
        "SELECT count(*) FROM shop.orders a WHERE total >= (SELECT min(total) FROM shop.orders)",
    ]
    expected = [23, 23, 46, 23]
    assert [_one_value(cli, sql) for sql in queries] == expected

    # Both sides of a self-join in the table format: columns of the same name both shown.
    result = cli("query", "SELECT a.id, b.id FROM shop.orders a JOIN shop.orders b USING (id)")
    assert result.code == 0, result.err
    assert "23 rows" in result.out


def test_a_name_differing_only_in_case_is_refused_at_connect_and_nothing_is_stored(
    cli: Cli, shop: SampleApi, write_spec: Callable[..., Path]
) -> None:
    spec = write_spec(demo_spec(shop.url))
    assert cli("connect", "cs", "--spec", str(spec), "--auth-token", TOKEN).code == 0

    result = cli("connect", "CS", "--spec", str(spec), "--auth-token", TOKEN)

    assert result.code == 2
    assert "'CS'" in result.err and "existing connection 'cs'" in result.err
    assert "Traceback" not in result.err + result.out
    listed = cli("connections", "list", "--json")
    assert [c["name"] for c in listed.json()] == ["cs"]
    missing = cli("connections", "status", "CS")
    assert missing.code == 2 and "did you mean 'cs'" in missing.err


def test_query_resolves_namespaces_that_differ_only_in_case_exactly(
    cli: Cli, write_spec: Callable[..., Path]
) -> None:
    # `cs` is deleted with its tables kept, then `CS` connects: both namespaces hold tables.
    with SampleApi(orders=23, customers=7, token=TOKEN) as big:
        _connect_and_sync(cli, write_spec(demo_spec(big.url), "big.json"), "cs")
    assert cli("connections", "delete", "cs").code == 0
    with SampleApi(orders=5, customers=2, token=TOKEN) as small:
        _connect_and_sync(cli, write_spec(demo_spec(small.url), "small.json"), "CS")

    assert _one_value(cli, "SELECT count(*) FROM cs.orders") == 23
    assert _one_value(cli, "SELECT count(*) FROM CS.orders") == 5
    assert _one_value(cli, 'SELECT count(*) FROM "CS".customers') == 2
    both = "SELECT (SELECT count(*) FROM cs.orders) * 100 + (SELECT count(*) FROM CS.orders)"
    assert _one_value(cli, both) == 2305

    ambiguous = cli("query", "SELECT count(*) FROM Cs.orders")
    assert ambiguous.code == 2
    assert "CS.orders" in ambiguous.err and "cs.orders" in ambiguous.err
    assert "Traceback" not in ambiguous.err


@pytest.mark.parametrize("text", ["[admin] x", "[/quote]", "[bold]x[/bold]"])
def test_query_table_prints_values_and_column_names_literally(cli: Cli, text: str) -> None:
    result = cli("query", f"SELECT '{text}' AS \"{text}\"")

    assert result.code == 0, result.err
    header, _, value = (line.strip("│┃ ") for line in result.out.splitlines()[1:4])
    assert (header, value) == (text, text)


@pytest.fixture
def failing_api() -> Iterator[ApiServer]:
    server = ApiServer()
    server.route("/items", lambda request: Reply({"error": "bad created[gte]"}, 400))
    with server:
        yield server


def test_an_api_error_quoting_brackets_is_shown_intact_by_sync_and_status(
    cli: Cli, failing_api: ApiServer, write_spec: Callable[..., Path]
) -> None:
    spec = {
        "version": "1",
        "base_url": failing_api.url,
        "auth": {"type": "none"},
        "streams": [{"name": "items", "endpoint": "/items"}],
    }
    assert cli("connect", "api", "--spec", str(write_spec(spec))).code == 0

    synced = cli("connections", "sync", "api")
    status = cli("connections", "status", "api")

    # The API's body, quoted whole in the notes column (which wraps at this width).
    quoted = '{"error":"bad created[gte]"}'.replace(" ", "")
    assert synced.code == 1
    assert quoted in _notes(synced.out), synced.out
    assert status.code == 0, status.err
    assert quoted in _notes(status.out), status.out


def _notes(table: str) -> str:
    """The last column of a rendered table, its lines joined, without whitespace."""
    cells = [line.split("│")[-2] for line in table.splitlines() if line.startswith("│")]
    return "".join("".join(cells).split())
