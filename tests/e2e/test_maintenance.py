"""`rq maintain` after many small syncs (issue 21, part 1): tables stay small, rows and time
travel stay as they were.

The fake is a small shop: orders keyed by id with their line items expanded (a child
table), read incrementally by `updated_at`; each sync brings 3 new orders and updates 2.
An unkeyed `events` stream appends what is new. 30 syncs, then maintenance.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.sink import open_sink
from tests.e2e.helpers import Cli, rows
from tests.support.api_server import ApiServer, RecordedRequest, Reply

SYNCS = 30


class Shop:
    def __init__(self) -> None:
        self.orders: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.clock = 0
        for _ in range(10):
            self.new_order()

    def tick(self) -> str:
        self.clock += 1
        hours, minutes, seconds = self.clock // 3600, self.clock // 60 % 60, self.clock % 60
        return f"2026-03-01T{hours:02d}:{minutes:02d}:{seconds:02d}Z"

    def new_order(self) -> None:
        """An order shaped like the demo's (rawquery_workers/demo): nested customer and
        address, tags, line items."""
        n = len(self.orders) + 1
        stamp = self.tick()
        customer = {
            "id": 100 + n % 17,
            "email": f"c{n % 17}@example.com",
            "address": {"city": ["Paris", "Lyon", "Oslo"][n % 3], "country": "FR"},
        }
        items = [
            {"sku": f"SKU-{k}", "title": f"Product {k}", "qty": k, "unit_price": 9.5 * k}
            for k in range(1, 2 + n % 3)
        ]
        self.orders[n] = {
            "id": n,
            "number": f"#{100000 + n}",
            "status": "new",
            "total": n * 1.5,
            "currency": "EUR",
            "channel": "web",
            "customer": customer,
            "tags": ["promo"] if n % 2 else [],
            "created_at": stamp,
            "updated_at": stamp,
            "items": items,
        }
        self.events.append({"order": n, "kind": "created", "at": stamp, "by": "web"})

    def change(self) -> None:
        self.orders[len(self.orders) - 4]["status"] = "paid"
        self.orders[len(self.orders) - 4]["updated_at"] = self.tick()
        self.orders[len(self.orders) - 7]["total"] += 1
        self.orders[len(self.orders) - 7]["updated_at"] = self.tick()
        for _ in range(3):
            self.new_order()

    def serve(self, server: ApiServer) -> None:
        def orders(request: RecordedRequest) -> Reply:
            since = request.params.get("since", "")
            found = sorted(
                (o for o in self.orders.values() if o["updated_at"] >= since),
                key=lambda o: o["updated_at"],
            )
            return Reply({"data": found})

        def events(request: RecordedRequest) -> Reply:
            since = request.params.get("since", "")
            return Reply({"data": [e for e in self.events if e["at"] >= since]})

        server.route("/orders", orders)
        server.route("/events", events)


def spec(server: ApiServer) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "none"},
        "streams": [
            {"name": "orders", "endpoint": "/orders", "data_path": "data",
             "params": {"since": "{{cursor}}"}, "cursor_field": "updated_at",
             "primary_key": ["id"], "flatten": {"customer": "prefix"},
             "types": {"tags": "json", "created_at": "timestamp", "updated_at": "timestamp"},
             "expand": {"items": {"primary_key": ["order_id", "sku"], "parent_key": "order_id"}}},
            {"name": "events", "endpoint": "/events", "data_path": "data",
             "params": {"since": "{{cursor}}"}, "cursor_field": "at"},
        ],
    }  # fmt: skip


def tables() -> dict[str, Any]:
    reset_settings()
    sink = open_sink(get_settings())
    return {n: sink.catalog.load_table(f"shop.{n}") for n in ("orders", "orders_items", "events")}


def sizes(table: Any) -> tuple[int, int]:
    """(bytes of data files, bytes of metadata files) under the table's location."""
    root = Path(table.location().removeprefix("file://"))
    data = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    metadata = sum(p.stat().st_size for p in (root / "metadata").rglob("*") if p.is_file())
    return data, metadata


@pytest.fixture
def synced(
    cli: Cli,
    write_spec: Callable[..., Path],
    api_server: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Shop:
    monkeypatch.setenv("RAWQUERY_MAINTAIN_AFTER_FILES", "0")  # measured here: none automatic
    shop = Shop()
    shop.serve(api_server)
    assert cli("connect", "shop", "--spec", str(write_spec(spec(api_server)))).code == 0
    for _ in range(SYNCS):
        assert cli("connections", "sync", "shop").code == 0
        shop.change()
    assert cli("connections", "sync", "shop").code == 0
    return shop


def test_after_thirty_syncs_maintenance_leaves_small_tables_with_the_same_rows(
    cli: Cli, synced: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAWQUERY_ORPHAN_GRACE_SECONDS", "0")
    before = {n: rows("shop", n, order_by=None) for n in ("orders", "orders_items", "events")}
    metadata_before = {n: sizes(t)[1] for n, t in tables().items()}
    history = tables()["orders"].metadata.snapshots
    assert len(history) > SYNCS and len(tables()["orders"].inspect.files()) > 10

    done = cli("maintain", "shop", "--json")

    assert done.code == 0, done.out + done.err
    report = {t["table"]: t for t in done.json()[0]["tables"]}
    assert set(report) == {"shop.orders", "shop.orders_items", "shop.events"}
    for name, table in tables().items():
        assert len(table.inspect.files()) <= 2, name
        assert len(table.metadata.snapshots) <= 5, name  # the default policy
        data, metadata = sizes(table)
        assert metadata * 2.5 < metadata_before[name], (name, metadata, metadata_before[name])
        # Demo-shaped rows: metadata smaller than the data. Not for `events` (100 rows of 4
        # columns, 4 KB compacted): one manifest of a kept snapshot is 6.5 KB of Avro.
        if name != "events":
            assert metadata < data, (name, metadata, data)
        key = "id" if name == "orders" else None
        assert _sorted(rows("shop", name, order_by=None), key) == _sorted(before[name], key)
        assert report[f"shop.{name}"]["files_after"] == len(table.inspect.files())
    # time travel within retention: every kept snapshot still reads
    orders = tables()["orders"]
    for snapshot in orders.metadata.snapshots:
        assert orders.scan(snapshot_id=snapshot.snapshot_id).to_arrow().num_rows > 0
    assert orders.properties["rq.state.complete"] == "true"


def test_the_next_sync_after_maintenance_is_incremental_and_exact(
    cli: Cli, synced: Shop, api_server: ApiServer
) -> None:
    assert cli("maintain", "shop").code == 0
    synced.change()
    api_server.requests.clear()

    assert cli("connections", "sync", "shop").code == 0

    assert all(r.params.get("since") for r in api_server.requests_to("/orders"))
    landed = {r["id"]: r for r in rows("shop", "orders")}
    assert set(landed) == set(synced.orders)
    assert all(landed[i]["status"] == o["status"] for i, o in synced.orders.items())
    assert len(rows("shop", "events", order_by=None)) == len(synced.events)


def test_maintenance_and_syncs_exclude_each_other(cli: Cli, synced: Shop) -> None:
    from rawquery_workers.registry import open_registry
    from rawquery_workers.registry.connections import plan_sync
    from rawquery_workers.registry.leases import LockOwner, maintenance_id

    reset_settings()
    registry = open_registry(get_settings())
    sync_id, _ = plan_sync(registry, "shop")
    registry.start_sync(sync_id)
    owner = LockOwner.current(sync_id)
    registry.leases.acquire("shop", sync_id, mode="distributed", ttl=60, owner=owner)

    refused = cli("maintain", "shop")

    assert refused.code != 0 and "already syncing" in refused.out + refused.err
    registry.finish_sync(sync_id, "succeeded")
    registry.leases.release("shop", sync_id)
    held = maintenance_id()
    registry.leases.acquire("shop", held, mode="distributed", ttl=60, owner=owner)

    busy = cli("connections", "sync", "shop")

    assert busy.code != 0 and "being maintained" in busy.out + busy.err
    registry.leases.release("shop", held)
    assert cli("connections", "sync", "shop").code == 0


def _sorted(values: list[dict[str, Any]], key: str | None) -> list[Any]:
    clean = [{k: v for k, v in r.items()} for r in values]
    return sorted(clean, key=lambda r: str(sorted(r.items())) if key is None else r[key])


def test_a_sync_maintains_the_tables_that_crossed_the_threshold(
    cli: Cli,
    write_spec: Callable[..., Path],
    api_server: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAWQUERY_MAINTAIN_AFTER_FILES", "4")
    shop = Shop()
    shop.serve(api_server)
    assert cli("connect", "shop", "--spec", str(write_spec(spec(api_server)))).code == 0
    outputs = []
    for _ in range(6):
        done = cli("connections", "sync", "shop")
        assert done.code == 0, done.out + done.err
        outputs.append(done.out)
        shop.change()

    assert not any("maintenance:" in out for out in outputs[:4])  # 4 files: not yet
    assert "maintenance: shop.events" in outputs[4]  # the 5th file crossed it
    events = tables()["events"]
    assert len(events.inspect.files()) <= 2
    assert sorted(r["order"] for r in rows("shop", "events", order_by=None)) == sorted(
        e["order"] for e in shop.events[: len(shop.events) - 3]
    )
