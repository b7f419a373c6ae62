"""A merge's cost follows the files it touches (issue 21, part 4): keyed tables are written
in small files, merges prune files by their key bounds, and maintenance re-clusters a
table whose files' key ranges overlap, so that a few changed keys rewrite a few files.

The fake lists orders changed since `since`, in id order or (an API sorted by something
else) shuffled; RAWQUERY_MERGE_FILE_SIZE is small, so 12,000 orders make many files.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.sink import copy_on_write as cow
from rawquery_workers.sink import open_sink
from tests.e2e.helpers import Cli, rows
from tests.support.api_server import ApiServer, RecordedRequest, Reply

ORDERS = 12000


class Orders:
    def __init__(self, shuffled: bool) -> None:
        self.shuffled = shuffled
        self.clock = 0
        self.orders = {i: self.order(i, "new") for i in range(1, ORDERS + 1)}

    def order(self, i: int, status: str) -> dict[str, Any]:
        self.clock += 1
        stamp = f"2026-03-{1 + self.clock // 86400:02d}T{self.clock // 3600 % 24:02d}:" + (
            f"{self.clock // 60 % 60:02d}:{self.clock % 60:02d}Z"
        )
        note = hashlib.sha256(f"{i}-{status}".encode()).hexdigest()  # compresses as real text
        return {"id": i, "status": status, "note": note, "updated_at": stamp}

    def change(self, ids: list[int], status: str) -> None:
        for i in ids:
            self.orders[i] = self.order(i, status)

    def serve(self, server: ApiServer) -> None:
        def listing(request: RecordedRequest) -> Reply:
            since = request.params.get("since", "")
            found = [o for o in self.orders.values() if o["updated_at"] > since]
            if self.shuffled:
                random.Random(7).shuffle(found)
            return Reply({"data": found})

        server.route("/orders", listing)


def spec(server: ApiServer) -> dict[str, Any]:
    return {
        "version": "1",
        "base_url": server.url,
        "auth": {"type": "none"},
        "streams": [
            {"name": "orders", "endpoint": "/orders", "data_path": "data",
             "params": {"since": "{{cursor}}"}, "cursor_field": "updated_at",
             "primary_key": ["id"], "types": {"updated_at": "timestamp"}},
        ],
    }  # fmt: skip


def table() -> Any:
    reset_settings()
    return open_sink(get_settings()).catalog.load_table("shop.orders")


def head_summary() -> dict[str, str]:
    head = table().current_snapshot()
    assert head is not None and head.summary is not None
    return head.summary.additional_properties


def id_ranges() -> list[tuple[int, int]]:
    files = table().inspect.files().to_pylist()
    return sorted((f["readable_metrics"]["id"]["lower_bound"],
                   f["readable_metrics"]["id"]["upper_bound"]) for f in files)  # fmt: skip


def disjoint(ranges: list[tuple[int, int]]) -> bool:
    return all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def exact(shop: Orders) -> None:
    landed = {r["id"]: r["status"] for r in rows("shop", "orders")}
    assert landed == {i: o["status"] for i, o in shop.orders.items()}


@pytest.fixture
def connect(
    cli: Cli,
    write_spec: Callable[..., Path],
    api_server: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[bool], Orders]:
    # ~1,300 of these rows a file (~80 KB of Parquet; a file below 10 KB is small)
    monkeypatch.setenv("RAWQUERY_MERGE_FILE_SIZE", "160000")
    monkeypatch.setenv("RAWQUERY_MAINTAIN_AFTER_FILES", "100000")  # only when asked here
    monkeypatch.setenv("RAWQUERY_ORPHAN_GRACE_SECONDS", "0")

    def make(shuffled: bool) -> Orders:
        shop = Orders(shuffled)
        shop.serve(api_server)
        assert cli("connect", "shop", "--spec", str(write_spec(spec(api_server)))).code == 0
        assert cli("connections", "sync", "shop").code == 0
        return shop

    return make


def test_a_merge_of_recent_keys_rewrites_one_of_many_files(
    cli: Cli, connect: Callable[[bool], Orders]
) -> None:
    shop = connect(False)
    files = len(id_ranges())
    assert files >= 6 and disjoint(id_ranges())

    shop.change([ORDERS - 2, ORDERS - 1, ORDERS], "paid")
    assert cli("connections", "sync", "shop").code == 0

    summary = head_summary()
    assert summary["deleted-data-files"] == "1", summary
    assert int(summary["deleted-records"]) * files <= ORDERS * 2  # one file's share
    exact(shop)

    shop.change([1, ORDERS // 2, ORDERS], "shipped")  # three files, far apart
    assert cli("connections", "sync", "shop").code == 0
    assert int(head_summary()["deleted-data-files"]) <= 4  # theirs and the change file's
    exact(shop)


def test_maintenance_reclusters_overlapping_files_so_merges_touch_few(
    cli: Cli, connect: Callable[[bool], Orders]
) -> None:
    shop = connect(True)  # an API not in key order: every file spans nearly all ids
    assert not disjoint(id_ranges())
    shop.change(list(range(ORDERS - 29, ORDERS + 1)), "paid")  # the 30 newest orders
    assert cli("connections", "sync", "shop").code == 0
    assert int(head_summary()["deleted-data-files"]) >= 4  # most files hold one of them
    before = rows("shop", "orders")

    done = cli("maintain", "shop", "--json")

    assert done.code == 0, done.out + done.err
    assert rows("shop", "orders") == before
    ranges = id_ranges()
    assert len(ranges) >= 6 and disjoint(ranges)  # clustered: numbers in number order
    shop.change(list(range(ORDERS - 59, ORDERS - 29)), "shipped")  # the next 30 newest
    assert cli("connections", "sync", "shop").code == 0
    assert int(head_summary()["deleted-data-files"]) <= 2  # one file, or two at a boundary
    exact(shop)

    again = cli("maintain", "shop", "--json")  # clustered, one small file: nothing to do
    assert again.code == 0
    assert again.json()[0]["tables"][0]["compacted"] == 0


def test_files_are_pruned_by_their_own_bounds_not_one_range_over_all_keys(
    cli: Cli, connect: Callable[[bool], Orders]
) -> None:
    connect(False)
    current = table()
    files = cow.live_files(current, current.current_snapshot())
    keys = pa.array([1, ORDERS], pa.int64())  # one range over both spans every file

    held = cow.files_holding(current, files, [("id", keys)])

    assert len(files) >= 6 and len(held) == 2
    # a string column: every file's bounds ("new".."new") hold "new", none holds "zzz"
    assert len(cow.files_holding(current, files, [("status", pa.array(["new"]))])) == len(files)
    assert cow.files_holding(current, files, [("status", pa.array(["zzz"]))]) == []
