"""Our tables read by a second engine: Daft, through the pyiceberg table objects of our
catalog, resolving Parquet columns by field id (docs/decisions/010).

A keyed stream with an expanded child and a partitioned append stream are synced, then
synced again after the API changed (a merge: a record moves partition, a child goes, new
records, a new column, an all-null column that gets numbers); after each sync every table
reads the same rows in Daft as in pyiceberg, and the same as the API's ground truth.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import daft
import pyarrow.parquet as pq
from pyiceberg.table import Table

from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.sink import open_sink
from rawquery_workers.sink.schema import FIELD_ID
from tests.e2e.helpers import Cli, rows
from tests.support.api_server import ApiServer, RecordedRequest, Reply

NAME = "shop"


class Shop:
    """`/orders` (each with `line_items`) and `/events`, one page each."""

    def __init__(self, server: ApiServer) -> None:
        self.orders: list[dict[str, Any]] = [
            order(1, "open", "2024-03-01T10:00:00Z", [(11, 1), (12, 2)]),
            order(2, "open", "2024-03-01T11:00:00Z", [(21, 1), (22, 5)]),
            order(3, "paid", "2024-03-02T09:30:00Z", [(31, 3)]),
        ]
        self.events: list[dict[str, Any]] = [
            {"id": 1, "kind": "click", "at": "2024-03-01T10:00:00Z"},
            {"id": 2, "kind": "view", "at": "2024-03-01T10:05:00Z"},
        ]
        server.route("/orders", lambda _: Reply({"data": self.orders}))
        server.route("/events", self.answer_events)

    def answer_events(self, _: RecordedRequest) -> Reply:
        return Reply({"data": self.events})


def order(oid: int, status: str, created: str, items: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "id": oid,
        "status": status,
        "created_at": created,
        "discount": None,
        "line_items": [{"id": item, "qty": qty} for item, qty in items],
    }


def spec(server: ApiServer) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "none"},
        "streams": [
            {
                "name": "orders",
                "endpoint": "/orders",
                "data_path": "data",
                "primary_key": ["id"],
                "types": {"created_at": "timestamp"},
                "expand": {"line_items": {"primary_key": "id", "parent_key": "order_id"}},
                "partition_by": ["status", "day(created_at)"],
                "sort_by": ["id"],
            },
            {
                "name": "events",
                "endpoint": "/events",
                "data_path": "data",
                "partition_by": ["kind"],
            },
        ],
    }


def load(table: str) -> Table:
    reset_settings()
    return open_sink(get_settings()).catalog.load_table((NAME, table))


def daft_rows(table: str, order_by: str = "id") -> list[dict[str, Any]]:
    """What Daft reads of the table: user columns only, sorted like `helpers.rows`."""
    read = daft.read_iceberg(load(table)).to_pylist()
    clean = [{k: v for k, v in r.items() if not k.startswith("_rq_")} for r in read]
    return sorted(clean, key=lambda r: r[order_by])


def check_tables(tables: dict[str, set[str]]) -> None:
    """Daft reads what pyiceberg reads; every file's columns carry the table's field ids;
    `tables` maps each table to its identifier fields."""
    for name, identifiers in tables.items():
        assert daft_rows(name) == rows(NAME, name), name
        table = load(name)
        assert table.schema().identifier_field_names() == identifiers, name
        for task in table.scan().plan_files():
            stored = pq.read_schema(task.file.file_path.removeprefix("file://"))
            for field in stored:
                assert field.metadata is not None, (name, field.name)
                wanted = table.schema().find_field(field.name).field_id
                assert int(field.metadata[FIELD_ID]) == wanted, (name, field.name)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def test_daft_reads_every_table_after_a_merge_and_a_schema_change(
    cli: Cli, write_spec: Callable[..., Path], api_server: ApiServer
) -> None:
    shop = Shop(api_server)
    assert cli("connect", NAME, "--spec", str(write_spec(spec(api_server)))).code == 0
    first = cli("connections", "sync", NAME)
    assert first.code == 0, first.out + first.err
    tables = {"orders": {"id"}, "orders_line_items": {"id"}, "events": set()}
    check_tables(tables)
    orders = load("orders")
    assert [(str(f.transform), f.name) for f in orders.spec().fields] == [
        ("identity", "status"),
        ("day", "_rq_created_at_day"),
    ]
    assert [str(f.transform) for f in load("events").spec().fields] == ["identity"]

    # The API changes: order 2 is paid (another partition) and loses an item, order 4 is
    # new, a `coupon` field appears, `discount` (all null so far) gets numbers.
    shop.orders[1] = {**order(2, "paid", "2024-03-01T11:00:00Z", [(21, 4)]), "discount": 5}
    shop.orders.append({**order(4, "open", "2024-03-03T08:00:00Z", [(41, 1)]), "coupon": "X"})
    shop.events = [{"id": 3, "kind": "click", "at": "2024-03-02T00:00:00Z", "page": "/a"}]
    second = cli("connections", "sync", NAME)
    assert second.code == 0, second.out + second.err
    check_tables(tables)

    assert rows(NAME, "orders") == [
        {"id": 1, "status": "open", "created_at": at("2024-03-01T10:00:00Z"), "discount": None,
         "coupon": None},
        {"id": 2, "status": "paid", "created_at": at("2024-03-01T11:00:00Z"), "discount": 5,
         "coupon": None},
        {"id": 3, "status": "paid", "created_at": at("2024-03-02T09:30:00Z"), "discount": None,
         "coupon": None},
        {"id": 4, "status": "open", "created_at": at("2024-03-03T08:00:00Z"), "discount": None,
         "coupon": "X"},
    ]  # fmt: skip
    assert rows(NAME, "orders_line_items") == [
        {"order_id": 1, "id": 11, "qty": 1},
        {"order_id": 1, "id": 12, "qty": 2},
        {"order_id": 2, "id": 21, "qty": 4},
        {"order_id": 3, "id": 31, "qty": 3},
        {"order_id": 4, "id": 41, "qty": 1},
    ]
    assert [(r["id"], r["kind"], r["page"]) for r in rows(NAME, "events")] == [
        (1, "click", None),
        (2, "view", None),
        (3, "click", "/a"),
    ]
    one_partition_per_file()

    # a full refresh stages the rows on a branch and swaps them in: the same holds after it
    events = rows(NAME, "events")
    refreshed = cli("connections", "sync", NAME, "--full-refresh")
    assert refreshed.code == 0, refreshed.out + refreshed.err
    check_tables(tables)
    assert [r["id"] for r in rows(NAME, "orders")] == [1, 2, 3, 4]
    assert rows(NAME, "events") == [r for r in events if r["id"] == 3]
    one_partition_per_file()


def one_partition_per_file() -> None:
    for name, column in (("orders", "status"), ("events", "kind")):
        for task in load(name).scan().plan_files():
            held = pq.read_table(task.file.file_path.removeprefix("file://"), columns=[column])
            assert len(set(held.column(column).to_pylist())) == 1, (name, task.file.file_path)
