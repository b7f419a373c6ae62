"""Maintenance in distributed mode: a stream's last commit on a worker maintains its tables
once they crossed the threshold (under the sync's lease), and `rq maintain` from the CLI
takes the same lease as the workers' syncs."""

from __future__ import annotations

from tests.distributed.conftest import Dist, Workers
from tests.e2e.helpers import rows
from tests.e2e.test_maintenance import Shop, spec, tables
from tests.support.api_server import ApiServer


def test_workers_maintain_the_tables_of_a_stream_that_crossed_the_threshold(
    dist: Dist, workers: Workers
) -> None:
    with ApiServer() as server:
        shop = Shop()
        shop.serve(server)
        dist.connect("shop", spec(server))
        workers.start(2, RAWQUERY_MAINTAIN_AFTER_FILES="3")
        for _ in range(6):
            done = dist.rq("connections", "sync", "shop")
            assert done.returncode == 0, done.stdout + done.stderr
            synced = {i: o["status"] for i, o in shop.orders.items()}
            shop.change()

        for name, table in tables().items():
            assert len(table.inspect.files()) <= 3, name
            maintained = [
                s
                for s in table.metadata.snapshots
                if "rq.maintained" in s.summary.additional_properties
            ]
            assert maintained, name
        landed = {r["id"]: r["status"] for r in rows("shop", "orders")}
        assert landed == synced
        assert len(rows("shop", "events", order_by=None)) == len(shop.events) - 3

        done = dist.rq("maintain", "shop")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "shop.orders:" in done.stdout
