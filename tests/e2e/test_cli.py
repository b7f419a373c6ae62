"""Issue 2, end to end: the `rq` commands a person types, against the demo's sample API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet

from rawquery_workers.cli.demo_cmd import demo_spec
from rawquery_workers.demo.sample_api import SampleApi
from tests.e2e.helpers import Cli, files_containing, rows, run_rq, status_streams

TOKEN = "CANARY-bearer-7f3a9c"
STATUS_KEYS = {
    "name",
    "status",
    "rows",
    "error",
    "cursor",
    "schema_changes",
    "warnings",
    "started_at",
    "finished_at",
}


@pytest.fixture
def shop() -> Iterator[SampleApi]:
    with SampleApi(orders=23, customers=7, token=TOKEN) as api:
        yield api


@pytest.fixture
def shop_spec(shop: SampleApi, write_spec: Callable[..., Path]) -> Path:
    return write_spec(demo_spec(shop.url), "shop.json")


def _connected(cli: Cli, spec: Path, name: str = "my-api", *extra: str) -> None:
    result = cli("connect", name, "--spec", str(spec), "--auth-token", TOKEN, *extra)
    assert result.code == 0, result.err


def _listed(cli: Cli) -> list[dict[str, Any]]:
    result = cli("connections", "list", "--json")
    assert result.code == 0, result.err
    return result.json()


BAD_SPEC = {
    "version": "1",
    "base_url": "ftp://example.com",
    "auth": {"type": "bearer", "tokn": "x"},
    "streams": [
        {"name": "users", "endpoint": "/users", "pagination": {"type": "pages"}},
        {"name": "orders", "endpoint": "/orders", "expand": {"items": {"primary_key": "id"}}},
    ],
}


def test_connect_bad_spec_exits_2_with_one_line_per_problem_and_stores_nothing(
    cli: Cli, write_spec: Callable[..., Path]
) -> None:
    spec = write_spec(BAD_SPEC, "bad.json")
    result = cli("connect", "bad", "--spec", str(spec), "--auth-token", TOKEN)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    paths = ["base_url", "auth.tokn", "streams[0].pagination.type", "streams[1].expand"]
    for path in paths:
        assert any(f": {path}" in line for line in lines), (path, lines)
    assert all(line.startswith(f"{spec}: ") for line in lines), lines
    assert "unknown pagination type 'pages'; expected one of offset" in result.err
    assert "Traceback" not in result.err
    assert _listed(cli) == []


def test_connect_bad_spec_as_a_real_process_has_no_traceback(
    rq_home: Path, write_spec: Callable[..., Path]
) -> None:
    spec = write_spec(BAD_SPEC, "bad.json")
    result = run_rq("connect", "bad", "--spec", str(spec), "--auth-token", TOKEN)
    assert result.code == 2
    assert "streams[0].pagination.type" in result.err
    assert "Traceback" not in result.err + result.out
    malformed = spec.with_name("broken.json")
    malformed.write_text('{"version": "1",\n  "base_url": }')
    result = run_rq("spec", "validate", str(malformed))
    assert result.code == 2
    assert f"{malformed}:2:" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize(
    ("auth", "flags", "missing"),
    [
        ({"type": "bearer"}, [], "--auth-token"),
        ({"type": "api_key", "header": "X-Key"}, [], "--auth-token"),
        ({"type": "basic"}, ["--auth-user", "me"], "--auth-pass"),
        (
            {"type": "oauth2", "token_url": "http://127.0.0.1:1/token"},
            ["--client-id", "id"],
            "--client-secret, --refresh-token",
        ),
    ],
)
def test_connect_without_a_needed_credential_flag_exits_2_naming_it(
    cli: Cli,
    write_spec: Callable[..., Path],
    auth: dict[str, Any],
    flags: list[str],
    missing: str,
) -> None:
    spec = {**BAD_SPEC, "base_url": "http://127.0.0.1:1/v1", "auth": auth}
    spec["streams"] = [{"name": "users", "endpoint": "/users"}]
    result = cli("connect", "c1", "--spec", str(write_spec(spec)), *flags)
    assert result.code == 2, result.err
    assert missing in result.err
    assert "auth.type" in result.err
    assert _listed(cli) == []


def test_connect_twice_with_one_name_is_refused(cli: Cli, shop_spec: Path) -> None:
    _connected(cli, shop_spec)
    again = cli("connect", "my-api", "--spec", str(shop_spec), "--auth-token", "other")
    assert again.code != 0
    assert "already exists" in again.err and "rq connections update my-api" in again.err
    assert [c["name"] for c in _listed(cli)] == ["my-api"]


def test_list_shows_connections_as_json_and_as_a_table(cli: Cli, shop_spec: Path) -> None:
    assert "no connections yet" in cli("connections", "list").out
    _connected(cli, shop_spec, "my-api", "--schedule", "daily")
    _connected(cli, shop_spec, "second")
    listed = {c["name"]: c for c in _listed(cli)}
    assert set(listed) == {"my-api", "second"}
    assert listed["my-api"]["streams"] == ["orders", "customers"]
    assert listed["my-api"]["schedule"] is not None
    assert listed["second"]["schedule"] is None
    table = cli("connections", "list")
    assert table.code == 0 and "my-api" in table.out and "second" in table.out


def test_update_validates_before_storing_and_changes_schedule_and_credentials(
    cli: Cli, shop: SampleApi, write_spec: Callable[..., Path]
) -> None:
    spec = demo_spec(shop.url)
    good = write_spec(spec, "good.json")
    result = cli("connect", "my-api", "--spec", str(good), "--auth-token", "wrong-token")
    assert result.code == 0, result.err
    before = _listed(cli)

    bad = write_spec({**spec, "streams": [{"name": "x", "endpont": "/x"}]}, "bad.json")
    result = cli("connections", "update", "my-api", "--spec", str(bad))
    assert result.code == 2
    assert "streams[0].endpont" in result.err
    assert _listed(cli) == before

    result = cli("connections", "update", "my-api", "--schedule", "every tuesday")
    assert result.code == 2
    assert _listed(cli) == before

    # The stored (wrong) token fails the sync; updating the credential fixes it.
    assert cli("connections", "sync", "my-api").code == 1
    assert "401" in status_streams(cli, "my-api")["orders"]["error"]
    result = cli(
        "connections", "update", "my-api", "--auth-token", TOKEN, "--schedule", "0 3 * * *"
    )
    assert result.code == 0, result.err
    assert "credentials" in result.out and "schedule" in result.out
    assert _listed(cli)[0]["schedule"] == "0 3 * * *"
    assert cli("connections", "sync", "my-api").code == 0
    assert len(rows("my-api", "orders")) == 23

    only_orders = {**spec, "streams": spec["streams"][:1]}
    result = cli("connections", "update", "my-api", "--spec", str(write_spec(only_orders)))
    assert result.code == 0, result.err
    assert _listed(cli)[0]["streams"] == ["orders"]
    assert _listed(cli)[0]["schedule"] == "0 3 * * *"
    result = cli("connections", "update", "my-api", "--no-schedule")
    assert result.code == 0 and _listed(cli)[0]["schedule"] is None
    assert cli("connections", "update", "nope", "--no-schedule").code != 0


def test_status_json_has_the_interface_shape_before_and_after_a_sync(
    cli: Cli, shop: SampleApi, shop_spec: Path
) -> None:
    _connected(cli, shop_spec)
    result = cli("connections", "status", "my-api", "--json")
    assert result.code == 0, result.err
    payload = result.json()
    # Another helper added "skipped" (refused scheduled syncs) beside these two.
    assert {"connection", "streams"} <= set(payload) and payload["connection"] == "my-api"
    assert [s["name"] for s in payload["streams"]] == ["orders", "customers"]
    for stream in payload["streams"]:
        assert set(stream) == STATUS_KEYS
        assert stream["status"] == "never"
        assert stream["error"] is None and stream["started_at"] is None

    assert cli("connections", "sync", "my-api").code == 0
    streams = status_streams(cli, "my-api")
    for stream in streams.values():
        assert set(stream) == STATUS_KEYS
        assert stream["status"] == "succeeded" and stream["error"] is None
        assert stream["started_at"] <= stream["finished_at"]
    assert streams["orders"]["rows"] == 23 and streams["customers"]["rows"] == 7
    assert streams["orders"]["cursor"] == max(o["updated_at"] for o in shop.orders)
    assert streams["customers"]["cursor"] is None
    assert any(
        "created table my-api.orders_line_items" in c for c in streams["orders"]["schema_changes"]
    )
    text = cli("connections", "status", "my-api")
    assert text.code == 0 and "succeeded" in text.out
    missing = cli("connections", "status", "nope", "--json")
    assert missing.code != 0 and "no connection named 'nope'" in missing.err


def test_delete_keeps_tables_unless_drop_tables(cli: Cli, shop_spec: Path) -> None:
    _connected(cli, shop_spec, "keep")
    _connected(cli, shop_spec, "drop")
    assert cli("connections", "sync", "keep").code == 0
    assert cli("connections", "sync", "drop").code == 0

    result = cli("connections", "delete", "keep")
    assert result.code == 0, result.err
    assert [c["name"] for c in _listed(cli)] == ["drop"]
    assert len(rows("keep", "orders")) == 23
    assert (
        cli("query", "SELECT count(*) AS n FROM keep.orders_line_items", "--format", "json").code
        == 0
    )

    result = cli("connections", "delete", "drop", "--drop-tables")
    assert result.code == 0, result.err
    assert "dropped 3 tables" in result.out
    assert _listed(cli) == []
    gone = cli("query", "SELECT * FROM drop.orders")
    assert gone.code != 0 and "drop.orders" in gone.err
    assert cli("connections", "status", "drop").code != 0
    # The name is free again.
    _connected(cli, shop_spec, "drop")


def _expected_orders(shop: SampleApi) -> list[dict[str, Any]]:
    return [
        {
            "id": o["id"],
            "order_number": o["number"],
            "status": o["status"],
            "total": float(o["total"]),
            "customer_id": o["customer"]["id"],
            "customer_email": o["customer"]["email"],
        }
        for o in shop.orders
    ]


def test_query_formats_over_parent_and_child_tables_with_a_dashed_name(
    cli: Cli, shop: SampleApi, shop_spec: Path
) -> None:
    _connected(cli, shop_spec)
    assert cli("connections", "sync", "my-api").code == 0
    columns = "id, order_number, status, total, customer_id, customer_email"
    sql = f"SELECT {columns} FROM my-api.orders ORDER BY id"
    result = cli("query", sql, "--format", "json")
    assert result.code == 0, result.err
    assert result.json() == _expected_orders(shop)

    child = (
        "SELECT li.order_id, li.id, li.sku, li.quantity FROM my-api.orders_line_items li "
        'JOIN "my-api".orders o ON o.id = li.order_id ORDER BY li.id'
    )
    result = cli("query", child, "--format", "csv")
    assert result.code == 0, result.err
    expected = [
        f"{o['id']},{i['id']},{i['sku']},{i['quantity']}"
        for o in shop.orders
        for i in o["line_items"]
    ]
    lines = result.out.strip().splitlines()
    assert lines[0].replace('"', "") == "order_id,id,sku,quantity"
    assert [line.replace('"', "") for line in lines[1:]] == sorted(
        expected, key=lambda line: int(line.split(",")[1])
    )

    result = cli("query", "SELECT count(*) AS n, max(total) AS top FROM my-api.orders")
    assert result.code == 0, result.err
    assert "23" in result.out and "1 rows" in result.out
    assert cli("query", "SELECT * FROM MY-API.Customers", "--format", "json").code == 0

    bad = cli("query", "SELEKT 1")
    assert bad.code == 2 and "query:" in bad.err
    unknown = cli("query", "SELECT * FROM my-api.nope")
    assert unknown.code != 0 and "my-api.orders" in unknown.err
    unknown = cli("query", "SELECT * FROM no-such.users")
    assert unknown.code != 0 and "no table no-such.users" in unknown.err


def test_version_and_help_as_a_real_process(rq_home: Path) -> None:
    result = run_rq("--version")
    assert result.code == 0 and result.out.startswith("rawquery-workers ")
    missing = run_rq("connections", "status", "nope")
    assert missing.code != 0 and "no connection named 'nope'" in missing.err
    assert "Traceback" not in missing.err


def test_secrets_rotate_re_encrypts_with_the_newest_key(
    cli: Cli, shop_spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("RAWQUERY_SECRET_KEY", old)
    _connected(cli, shop_spec)
    monkeypatch.setenv("RAWQUERY_SECRET_KEY", new)
    refused = cli("connections", "sync", "my-api")
    assert refused.code != 0 and TOKEN not in refused.err + refused.out
    monkeypatch.setenv("RAWQUERY_SECRET_KEY", f"{new},{old}")
    result = cli("secrets", "rotate")
    assert result.code == 0, result.err
    assert "re-encrypted 1 stored credential" in result.out
    monkeypatch.setenv("RAWQUERY_SECRET_KEY", new)
    assert cli("connections", "sync", "my-api").code == 0
    assert len(rows("my-api", "customers")) == 7


def test_no_stored_credential_is_in_plain_text_anywhere_under_home(
    cli: Cli, rq_home: Path, write_spec: Callable[..., Path], shop: SampleApi
) -> None:
    from tests.support.api_server import ApiServer, Reply

    user, password, key = "CANARY-user-41c2", "CANARY-pass-9d0e", "CANARY-key-b6f1"
    with ApiServer() as server:
        server.route("/items", lambda r: Reply({"items": [{"id": 1, "key_seen": True}]}))
        server.route("/broken", lambda r: Reply(status=400, body={"error": "bad " + r.path}))
        api_key = {
            "version": "1",
            "base_url": server.url,
            "auth": {"type": "api_key", "query_param": "api_key"},
            "streams": [
                {"name": "items", "endpoint": "/items", "data_path": "items"},
                {"name": "broken", "endpoint": "/broken"},
            ],
        }
        spec = write_spec(api_key, "key.json")
        assert cli("connect", "keyed", "--spec", str(spec), "--auth-token", key).code == 0
        failed = cli("connections", "sync", "keyed")
        assert failed.code == 1
        basic = {**api_key, "auth": {"type": "basic"}, "streams": api_key["streams"][:1]}
        spec = write_spec(basic, "basic.json")
        result = cli(
            "connect", "basic", "--spec", str(spec), "--auth-user", user, "--auth-pass", password
        )
        assert result.code == 0
        assert cli("connections", "sync", "basic").code == 0
    _connected(cli, write_spec(demo_spec(shop.url), "shop.json"))
    assert cli("connections", "sync", "my-api").code == 0
    error = status_streams(cli, "keyed")["broken"]["error"]
    assert "/broken" in error and "HTTP 400" in error and key not in error

    canaries = [TOKEN, user, password, key]
    everything = cli("connections", "list", "--json").out + orjson.dumps(error).decode()
    assert not [c for c in canaries if c in everything]
    assert files_containing(rq_home, canaries) == []
    assert (rq_home / "catalog.db").stat().st_size > 0
    assert oct((rq_home / "secret.key").stat().st_mode & 0o777) == "0o600"
