"""IcebergSink against a real SqlCatalog (SQLite in a tmp dir; one PostgreSQL run)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import CommitTableResponse, Table
from pyiceberg.table.update import TableRequirement, TableUpdate

from rawquery_workers.errors import SinkError, StaleSyncError
from rawquery_workers.settings import get_settings
from rawquery_workers.sink import IcebergSink, close_catalogs, new_catalog, open_catalog
from rawquery_workers.transform.batch import KEY, REJECTED, SYNCED_AT, TableBatch

NS = "shop"


# --- helpers ---------------------------------------------------------------------------


def make_batch(
    name: str,
    columns: dict[str, pa.Array | list[Any]],
    *,
    keys: Sequence[str] = (),
    parent_key: str | None = None,
    parent: str | None = None,
    parent_keys: pa.Array | None = None,
    retypable: frozenset[str] = frozenset(),
) -> TableBatch:
    """A batch shaped like transform's: data columns, then _rq_rejected and _rq_key."""
    data = pa.table(columns)
    data = data.append_column(REJECTED, pa.nulls(data.num_rows, pa.string()))
    if keys:
        data = data.append_column(KEY, data.column(keys[0]).cast(pa.string()))
    return TableBatch(name, data, tuple(keys), parent_key, parent, parent_keys, retypable)


def land(
    sink: IcebergSink,
    batch: TableBatch,
    *,
    sync_id: str,
    segment: int,
    mode: str = "merge",
    state: dict[str, str] | None = None,
    namespace: str = NS,
) -> bool:
    """prepare + write_files + commit, the way the pipeline does it."""
    sink.prepare(namespace, batch)
    files = sink.write_files(namespace, batch.name, batch.data, sync_id=sync_id, segment=segment)
    return sink.commit(
        namespace,
        batch.name,
        files,
        mode="merge" if mode == "merge" and batch.keys else mode,  # type: ignore[arg-type]
        parent_key_column=batch.parent_key,
        parent_keys=batch.parent_keys,
        state=state or {},
        sync_id=sync_id,
        segment=segment,
    )


def stage(sink: IcebergSink, batch: TableBatch, *, sync_id: str, segment: int) -> bool:
    sink.prepare(NS, batch)
    files = sink.write_files(NS, batch.name, batch.data, sync_id=sync_id, segment=segment)
    return sink.stage_replace(
        NS,
        batch.name,
        files,
        sync_id=sync_id,
        segment=segment,
        parent_key_column=batch.parent_key,
        parent_keys=batch.parent_keys,
    )


def rows(sink: IcebergSink, table: str, *columns: str, namespace: str = NS) -> list[tuple]:
    data = sink.scan_arrow(namespace, table, list(columns)).read_all()
    return sorted(zip(*(data.column(c).to_pylist() for c in columns), strict=True))


def users(ids: range, label: str) -> TableBatch:
    return make_batch(
        "users",
        {"id": pa.array(list(ids), pa.int64()), "name": [f"{label}{i}" for i in ids]},
        keys=("id",),
    )


@pytest.fixture
def catalog_uri(tmp_path: Path) -> tuple[str, str]:
    return f"sqlite:///{tmp_path / 'catalog.db'}", (tmp_path / "warehouse").as_uri()


@pytest.fixture
def sink(catalog_uri: tuple[str, str]) -> Iterator[IcebergSink]:
    catalog = new_catalog(*catalog_uri)
    yield IcebergSink(catalog)
    catalog.close()


# --- catalog ---------------------------------------------------------------------------


def test_open_catalog_is_cached_and_sqlite_uses_wal(rq_home: Path) -> None:
    catalog = open_catalog()
    try:
        assert open_catalog(get_settings()) is catalog
        assert catalog.name == "rawquery"
        with catalog.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        close_catalogs()


def test_open_catalog_failure_is_a_sink_error_without_password() -> None:
    with pytest.raises(SinkError) as info:
        new_catalog("postgresql+psycopg://u:s3cret@127.0.0.1:1/x", "file:///tmp/rq-wh")
    assert "s3cret" not in str(info.value)
    assert "RAWQUERY_CATALOG_URI" in str(info.value)


# --- schema ----------------------------------------------------------------------------


def test_prepare_creates_table_with_system_columns(sink: IcebergSink) -> None:
    changes = sink.prepare(NS, users(range(2), "u"))
    assert changes == ["created table shop.users with 5 columns"]
    known = sink.known_schema(NS, "users")
    assert known is not None
    assert known.schema.field(SYNCED_AT).type == pa.timestamp("us", tz="UTC")
    assert known.schema.field("name").type == pa.string()
    assert sink.prepare(NS, users(range(2), "u")) == []
    assert sink.known_schema(NS, "nope") is None
    assert sink.list_tables(NS) == ["users"]
    assert sink.all_tables() == [(NS, "users")]


def test_prepare_adds_columns_and_retypes_an_all_null_column(sink: IcebergSink) -> None:
    first = make_batch(
        "people",
        {"id": pa.array([1, 2], pa.int64()), "age": pa.nulls(2, pa.string())},
        keys=("id",),
        retypable=frozenset({"age"}),
    )
    assert "added" not in " ".join(sink.prepare(NS, first))
    assert sink.known_schema(NS, "people").retypable == {"age"}  # type: ignore[union-attr]
    files = sink.write_files(NS, "people", first.data, sync_id="s1", segment=0)
    assert "age" not in pq.read_schema(files[0].removeprefix("file://")).names
    sink.commit(NS, "people", files, mode="merge", state={}, sync_id="s1", segment=0)

    second = make_batch(
        "people",
        {
            "id": pa.array([2, 3], pa.int64()),
            "age": pa.array([40, 50], pa.int64()),
            "email": ["b@x", None],
        },
        keys=("id",),
    )
    changes = sink.prepare(NS, second)
    assert changes == [
        "column 'age' retyped from string (all null so far) to long",
        "added column 'email' (string)",
    ]
    known = sink.known_schema(NS, "people")
    assert known is not None and known.retypable == frozenset()
    assert known.schema.field("age").type == pa.int64()
    assert land(sink, second, sync_id="s2", segment=0)
    assert rows(sink, "people", "id", "age", "email") == [
        (1, None, None),
        (2, 40, "b@x"),
        (3, 50, None),
    ]
    # a string column that gets string values simply stops being retypable
    third = make_batch(
        "people", {"id": pa.array([4], pa.int64()), "nick": pa.nulls(1, pa.string())},
        keys=("id",), retypable=frozenset({"nick"}),
    )  # fmt: skip
    assert sink.prepare(NS, third) == ["added column 'nick' (string, all null so far)"]
    fourth = make_batch("people", {"id": pa.array([4], pa.int64()), "nick": ["d"]}, keys=("id",))
    assert sink.prepare(NS, fourth) == []
    assert sink.known_schema(NS, "people").retypable == frozenset()  # type: ignore[union-attr]


def test_write_rejects_values_that_cannot_be_cast(sink: IcebergSink) -> None:
    sink.prepare(NS, users(range(1), "u"))
    bad = pa.table({"id": ["x"], "name": ["a"]})
    with pytest.raises(SinkError, match=r"shop.users.id: values of type string"):
        sink.write_files(NS, "users", bad, sync_id="s", segment=0)
    with pytest.raises(SinkError, match="prepare"):
        sink.write_files(NS, "users", pa.table({"zzz": [1]}), sync_id="s", segment=0)


# --- writes ----------------------------------------------------------------------------


def test_write_files_dedupes_splits_and_carries_field_ids(sink: IcebergSink) -> None:
    batch = make_batch(
        "users",
        {"id": pa.array([1, 2, 1] * 1000, pa.int64()), "name": [f"n{i}" for i in range(3000)]},
        keys=("id",),
    )
    sink.prepare(NS, batch)
    small = IcebergSink(sink.catalog, target_file_size=200)
    many = sink.write_files(NS, "users", users(range(300), "u").data, sync_id="s", segment=1)
    assert len(many) == 1
    split = small.write_files(NS, "users", users(range(300), "u").data, sync_id="s", segment=2)
    assert len(split) > 5
    files = sink.write_files(NS, "users", batch.data, sync_id="s", segment=0)
    assert sink.commit(NS, "users", files, mode="merge", sync_id="s", segment=0)
    assert rows(sink, "users", "id", "name") == [(1, "n2999"), (2, "n2998")]
    local = files[0].removeprefix("file://")
    assert "/data/rq-s/" in local
    schema = pq.read_schema(local)
    table = sink.catalog.load_table((NS, "users")).schema()
    assert {f.name: int(f.metadata[b"PARQUET:field_id"]) for f in schema} == {
        name: table.find_field(name).field_id for name in schema.names
    }
    assert table.identifier_field_names() == {"id"}  # the primary key, required
    assert table.find_field("id").required and not schema.field("id").nullable
    assert pq.ParquetFile(local).metadata.row_group(0).column(0).compression == "ZSTD"


def test_append_records_state_and_empty_commit_records_state(sink: IcebergSink) -> None:
    assert land(sink, users(range(3), "a"), sync_id="s1", segment=0, mode="append",
                state={"rq.cursor": "c1"})  # fmt: skip
    assert land(sink, users(range(3), "a"), sync_id="s1", segment=1, mode="append")
    assert len(rows(sink, "users", "id")) == 6
    assert sink.commit(NS, "users", [], mode="append", state={"rq.cursor": "c2",
                       "rq.complete": "true"}, sync_id="s2", segment=0)  # fmt: skip
    state = sink.committed_state(NS, "users")
    assert state == {"rq.cursor": "c2", "rq.complete": "true", "rq.sync_id": "s2",
                     "rq.segment": "0"}  # fmt: skip
    assert len(rows(sink, "users", "id")) == 6
    with pytest.raises(ValueError, match="rq."):
        sink.commit(NS, "users", [], mode="append", state={"cursor": "x"}, sync_id="s", segment=9)


def test_merge_newest_wins_and_rewrites_only_matching_files(sink: IcebergSink) -> None:
    land(sink, users(range(0, 10), "a"), sync_id="s1", segment=0)
    land(sink, users(range(100, 110), "b"), sync_id="s1", segment=1)
    land(sink, users(range(5, 15), "c"), sync_id="s2", segment=0)
    result = dict(rows(sink, "users", "id", "name"))
    assert len(result) == 25
    assert [result[i] for i in (0, 4, 5, 9, 14, 100)] == ["a0", "a4", "c5", "c9", "c14", "b100"]
    before = set(sink.planned_parquet_files(NS, "users") or [])
    land(sink, users(range(100, 101), "d"), sync_id="s3", segment=0)  # only file b holds 100
    after = set(sink.planned_parquet_files(NS, "users") or [])
    assert len(before - after) == 1 and len(after - before) == 2  # b rewritten + new file
    assert dict(rows(sink, "users", "id", "name"))[100] == "d100"
    assert len(rows(sink, "users", "id")) == 25


def test_merge_with_multi_column_keys_and_explicit_delete_keys(sink: IcebergSink) -> None:
    def batch(pairs: list[tuple[str, int]], label: str) -> TableBatch:
        b = make_batch(
            "lines",
            {"acct": [a for a, _ in pairs], "n": pa.array([n for _, n in pairs], pa.int64()),
             "v": [label] * len(pairs)},
            keys=("acct", "n"),
        )  # fmt: skip
        key = pa.array([f'["{a}",{n}]' for a, n in pairs])
        return TableBatch("lines", b.data.set_column(b.data.num_columns - 1, KEY, key), b.keys)

    land(sink, batch([("a", 1), ("a", 2), ("b", 1)], "old"), sync_id="s", segment=0)
    newer = batch([("a", 2), ("b", 2)], "new")
    sink.prepare(NS, newer)
    files = sink.write_files(NS, "lines", newer.data, sync_id="s", segment=1)
    keys = newer.data.column(KEY).combine_chunks()
    sink.commit(NS, "lines", files, mode="merge", key_column=KEY, delete_keys=keys,
                sync_id="s", segment=1)  # fmt: skip
    assert rows(sink, "lines", "acct", "n", "v") == [
        ("a", 1, "old"), ("a", 2, "new"), ("b", 1, "old"), ("b", 2, "new")
    ]  # fmt: skip


def orders(ids: list[int], label: str) -> TableBatch:
    return make_batch(
        "orders", {"id": pa.array(ids, pa.int64()), "label": [label] * len(ids)}, keys=("id",)
    )


def items(pairs: list[tuple[str, int]], parents: list[int]) -> TableBatch:
    return make_batch(
        "orders_items",
        {"id": [i for i, _ in pairs], "order_id": pa.array([o for _, o in pairs], pa.int64())},
        keys=("id",),
        parent_key="order_id",
        parent="orders",
        parent_keys=pa.array(parents, pa.int64()),
    )


def test_children_are_replaced_with_their_parent(sink: IcebergSink) -> None:
    land(sink, items([("a", 1), ("b", 1), ("c", 2), ("x", 3)], [1, 2, 3]), sync_id="s", segment=0)
    land(sink, orders([1, 2, 3], "v1"), sync_id="s", segment=0)
    # order 1 now has only item d, order 2 has no items any more, order 3 is untouched
    land(sink, items([("d", 1)], [1, 2]), sync_id="s2", segment=0)
    land(sink, orders([1, 2], "v2"), sync_id="s2", segment=0)
    assert rows(sink, "orders_items", "id", "order_id") == [("d", 1), ("x", 3)]
    assert rows(sink, "orders", "id", "label") == [(1, "v2"), (2, "v2"), (3, "v1")]


def test_replace_mode_swaps_everything_in_one_commit(sink: IcebergSink) -> None:
    land(sink, users(range(10), "a"), sync_id="s1", segment=0)
    land(sink, users(range(3), "b"), sync_id="s2", segment=0, mode="replace")
    assert rows(sink, "users", "id", "name") == [(0, "b0"), (1, "b1"), (2, "b2")]


# --- full refresh ----------------------------------------------------------------------


def test_full_refresh_is_atomic_for_a_concurrent_reader(
    sink: IcebergSink, catalog_uri: tuple[str, str]
) -> None:
    land(sink, users(range(300), "old"), sync_id="s0", segment=0)
    old = [(i, f"old{i}") for i in range(300)]
    segments = [
        users(range(0, 200), "n0"),
        users(range(100, 300), "n1"),
        users(range(250, 350), "n2"),
    ]
    new = sorted(
        [(i, f"n0{i}") for i in range(100)]
        + [(i, f"n1{i}") for i in range(100, 250)]
        + [(i, f"n2{i}") for i in range(250, 350)]
    )
    reader_sink = IcebergSink(new_catalog(*catalog_uri))  # another process would see this
    seen: list[str] = []
    scans = threading.Condition()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            got = rows(reader_sink, "users", "id", "name")
            with scans:
                seen.append("old" if got == old else "new" if got == new else f"bad:{len(got)}")
                scans.notify_all()

    def wait_for_scans_after_now() -> None:
        with scans:
            target = len(seen) + 2  # one scan that started after this point completes
            assert scans.wait_for(lambda: len(seen) >= target, timeout=60)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        wait_for_scans_after_now()
        for n, batch in enumerate(segments):
            assert stage(sink, batch, sync_id="full", segment=n)
            wait_for_scans_after_now()
        staged = sink.committed_state(NS, "users", staged_for="full")
        assert staged["rq.segment"] == "2"
        assert sink.finish_replace(NS, "users", sync_id="full", state={"rq.complete": "true"})
        wait_for_scans_after_now()
    finally:
        stop.set()
        reader.join()
        reader_sink.catalog.close()  # type: ignore[attr-defined]
    assert not [s for s in seen if s.startswith("bad")]
    assert seen[0] == "old" and seen[-1] == "new"
    assert set(seen) == {"old", "new"}
    assert "new" not in seen[: seen.index("new")]  # never went back
    assert "old" not in seen[seen.index("new") :]
    assert rows(sink, "users", "id", "name") == new
    assert sink.committed_state(NS, "users")["rq.complete"] == "true"
    assert sink.committed_state(NS, "users", staged_for="full")["rq.replaced"] == "true"


def test_full_refresh_children_follow_parent_and_finish_is_idempotent(sink: IcebergSink) -> None:
    land(sink, items([("a", 1), ("b", 1), ("c", 2)], [1, 2]), sync_id="s", segment=0)
    land(sink, orders([1, 2], "old"), sync_id="s", segment=0)
    # the refresh sees order 1 twice (pages shifted): its second version has only item d
    stage(sink, items([("a", 1), ("c", 2)], [1, 2]), sync_id="f", segment=0)
    stage(sink, orders([1, 2], "f0"), sync_id="f", segment=0)
    stage(sink, items([("d", 1)], [1]), sync_id="f", segment=1)
    stage(sink, orders([1], "f1"), sync_id="f", segment=1)
    assert not stage(sink, orders([1], "f1"), sync_id="f", segment=1)  # redelivered
    assert rows(sink, "orders", "id", "label") == [(1, "old"), (2, "old")]
    for table in ("orders_items", "orders"):
        assert sink.finish_replace(NS, table, sync_id="f", state={"rq.complete": "true"})
        assert not sink.finish_replace(NS, table, sync_id="f")
    assert not stage(sink, orders([9], "late"), sync_id="f", segment=7)  # after the finish
    assert not stage(sink, items([("z", 9)], [9]), sync_id="f", segment=7)
    assert rows(sink, "orders", "id", "label") == [(1, "f1"), (2, "f0")]
    assert rows(sink, "orders_items", "id", "order_id") == [("c", 2), ("d", 1)]
    table = sink.catalog.load_table((NS, "orders"))
    assert set(table.metadata.refs) == {"main"}
    assert not sink.finish_replace(NS, "never_created", sync_id="f")


def test_full_refresh_of_nothing_empties_the_table_and_abort_keeps_it(sink: IcebergSink) -> None:
    land(sink, users(range(5), "a"), sync_id="s", segment=0)
    stage(sink, users(range(2), "x"), sync_id="dead", segment=0)
    assert sink.committed_state(NS, "users", staged_for="dead")["rq.segment"] == "0"
    assert sink.abort_replace(NS, "users", "dead")
    assert sink.committed_state(NS, "users", staged_for="dead") == {}
    assert len(rows(sink, "users", "id")) == 5
    assert sink.finish_replace(NS, "users", sync_id="empty")
    assert rows(sink, "users", "id") == []


# --- idempotency, crashes, state -------------------------------------------------------


def test_same_segment_committed_twice_lands_once(sink: IcebergSink) -> None:
    batch = make_batch("events", {"n": pa.array(range(10), pa.int64())})
    assert land(sink, batch, sync_id="s", segment=0, mode="append")
    assert sink.segment_committed(NS, "events", "s", 0)
    assert not land(sink, batch, sync_id="s", segment=0, mode="append")  # redelivered task
    assert len(rows(sink, "events", "n")) == 10
    assert not sink.segment_committed(NS, "events", "s", 1)


def test_crash_between_write_and_commit_changes_nothing_and_cleanup_removes_files(
    sink: IcebergSink,
) -> None:
    land(sink, users(range(3), "a"), sync_id="s", segment=0, state={"rq.cursor": "1"})
    before = sink.committed_state(NS, "users")
    orphan = sink.write_files(NS, "users", users(range(3, 6), "b").data, sync_id="s", segment=1)
    # the worker dies here: no commit
    assert len(rows(sink, "users", "id")) == 3
    assert sink.committed_state(NS, "users") == before
    assert not sink.segment_committed(NS, "users", "s", 1)
    removed = sink.cleanup_orphans(NS, "users", "s")
    assert [f"file://{p}" for p in removed] == orphan
    assert not Path(orphan[0].removeprefix("file://")).exists()
    assert len(rows(sink, "users", "id")) == 3  # committed files were kept
    assert sink.cleanup_orphans(NS, "users", "s") == []
    # the redelivered segment commits normally
    assert land(sink, users(range(3, 6), "b"), sync_id="s", segment=1)
    assert len(rows(sink, "users", "id")) == 6


def test_committed_state_walks_back_past_foreign_snapshots(sink: IcebergSink) -> None:
    land(sink, users(range(3), "a"), sync_id="s", segment=0, state={"rq.cursor": "42"})
    table = sink.catalog.load_table((NS, "users"))
    with table.transaction() as tx, tx.update_snapshot().fast_append():
        pass  # a commit by another tool: no rq.* properties
    table = sink.catalog.load_table((NS, "users"))
    assert "rq.sync_id" not in table.current_snapshot().summary.additional_properties  # type: ignore[union-attr]
    assert sink.committed_state(NS, "users")["rq.cursor"] == "42"
    assert sink.committed_state(NS, "missing") == {}


def expire_all_but_head(sink: IcebergSink, table_name: str) -> None:
    """What `expire_snapshots(retain_last=1)` by any engine leaves: the head alone."""
    table = sink.catalog.load_table((NS, table_name))
    head = table.current_snapshot()
    assert head is not None
    older = [s.snapshot_id for s in table.metadata.snapshots if s.snapshot_id != head.snapshot_id]
    table.maintenance.expire_snapshots().by_ids(older).commit()


def foreign_rewrite(sink: IcebergSink, table_name: str) -> None:
    table = sink.catalog.load_table((NS, table_name))
    table.overwrite(table.scan().to_arrow())  # a commit without rq.* properties


def test_state_lives_in_the_table_properties_and_outlives_expired_snapshots(
    sink: IcebergSink,
) -> None:
    land(sink, users(range(3), "a"), sync_id="s", segment=0, state={"rq.cursor": "7"})
    land(sink, users(range(3, 5), "b"), sync_id="t", segment=0, state={"rq.complete": "false"})
    properties = sink.catalog.load_table((NS, "users")).properties
    assert properties["rq.state.sync_id"] == "t" and "rq.state.cursor" not in properties
    foreign_rewrite(sink, "users")
    expire_all_but_head(sink, "users")

    assert sink.committed_state(NS, "users") == {
        "rq.sync_id": "t", "rq.segment": "0", "rq.complete": "false"
    }  # fmt: skip
    # a redelivered commit of a segment whose snapshot is gone still commits nothing
    assert sink.segment_committed(NS, "users", "t", 0)
    assert not land(sink, users(range(3, 5), "b"), sync_id="t", segment=0)
    assert not sink.segment_committed(NS, "users", "t", 1)


def test_a_redelivered_full_refresh_finish_after_expiry_empties_nothing(sink: IcebergSink) -> None:
    land(sink, users(range(5), "a"), sync_id="s", segment=0)
    stage(sink, users(range(3), "f"), sync_id="f", segment=0)
    assert sink.finish_replace(NS, "users", sync_id="f", state={"rq.complete": "true"})
    land(sink, users(range(3, 4), "n"), sync_id="n", segment=0)
    expire_all_but_head(sink, "users")

    assert not sink.finish_replace(NS, "users", sync_id="f")  # its branch is gone: no swap
    assert rows(sink, "users", "id") == [(0,), (1,), (2,), (3,)]


def test_the_fence_sees_a_newer_sync_after_its_snapshots_expired(sink: IcebergSink) -> None:
    land(sink, users(range(3), "a"), sync_id="old", segment=0)
    fence = sink.head_sequence(NS, "users")
    land(sink, users(range(3, 6), "b"), sync_id="new", segment=0)  # the sync that took over
    foreign_rewrite(sink, "users")
    expire_all_but_head(sink, "users")
    files = sink.write_files(NS, "users", users(range(9, 10), "x").data, sync_id="old", segment=1)

    with pytest.raises(StaleSyncError, match="sync new committed"):
        sink.commit(NS, "users", files, mode="merge", sync_id="old", segment=1, fence=fence)
    # another engine's commit is nobody's: a sync that started after "new" still commits
    fence = sink.head_sequence(NS, "users")
    foreign_rewrite(sink, "users")
    expire_all_but_head(sink, "users")
    assert sink.commit(NS, "users", files, mode="merge", sync_id="third", segment=0, fence=fence)
    assert (9,) in rows(sink, "users", "id")


# --- concurrency -----------------------------------------------------------------------


class InterferingCatalog(SqlCatalog):
    """Runs `interfere` (a commit through another catalog object) just before its first
    commit reaches the database: a real lost race, deterministically."""

    interfere: Any = None

    def commit_table(
        self, table: Table, requirements: tuple[TableRequirement, ...],
        updates: tuple[TableUpdate, ...],
    ) -> CommitTableResponse:  # fmt: skip
        hook, self.interfere = self.interfere, None
        if hook is not None:
            hook()
        return super().commit_table(table, requirements, updates)


@pytest.mark.parametrize("same_segment", [False, True])
def test_lost_race_is_replanned_and_never_doubles(
    sink: IcebergSink, catalog_uri: tuple[str, str], same_segment: bool
) -> None:
    land(sink, users(range(0, 5), "base"), sync_id="s0", segment=0)
    uri, warehouse = catalog_uri
    racer = IcebergSink(InterferingCatalog("rawquery", uri=uri, warehouse=warehouse))
    mine = users(range(0, 10), "A")
    racer.prepare(NS, mine)
    files = racer.write_files(NS, "users", mine.data, sync_id="s1", segment=0)
    other = users(range(5, 15), "B")
    other_sync = ("s1", 0) if same_segment else ("s2", 0)

    def interfere() -> None:
        assert land(sink, other, sync_id=other_sync[0], segment=other_sync[1])

    racer.catalog.interfere = interfere  # type: ignore[attr-defined]
    landed = racer.commit(NS, "users", files, mode="merge", sync_id="s1", segment=0)
    assert len(rows(sink, "users", "id")) == 15
    result = dict(rows(sink, "users", "id", "name"))
    if same_segment:  # the other worker committed this very segment first
        assert not landed
        assert result == {**{i: f"base{i}" for i in range(5)}, **{i: f"B{i}" for i in range(5, 15)}}
    else:  # re-planned against the new head: A wins where it overlaps, B's others stay
        assert landed
        assert result == {**{i: f"A{i}" for i in range(10)}, **{i: f"B{i}" for i in range(10, 15)}}
    racer.catalog.close()  # type: ignore[attr-defined]


def test_two_writers_with_two_catalogs_lose_and_double_nothing(
    catalog_uri: tuple[str, str],
) -> None:
    segments, per = 8, 50
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    first = IcebergSink(new_catalog(*catalog_uri))  # both writers also race to create it

    def run(worker: str) -> None:
        writer = IcebergSink(new_catalog(*catalog_uri))
        try:
            start.wait()
            for seg in range(segments):
                batch = make_batch(
                    "events", {"w": [worker] * per, "n": pa.array(range(per), pa.int64())}
                )
                for _ in range(2):  # every segment is delivered twice
                    land(writer, batch, sync_id=worker, segment=seg, mode="append")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            writer.catalog.close()  # type: ignore[attr-defined]

    threads = [threading.Thread(target=run, args=(w,)) for w in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = rows(first, "events", "w", "n")
    assert len(got) == 2 * segments * per
    table = first.catalog.load_table((NS, "events"))
    props = [s.summary.additional_properties for s in table.snapshots()]  # type: ignore[union-attr]
    marks = [(p.get("rq.sync_id"), p.get("rq.segment")) for p in props]
    assert sorted(marks) == sorted({(w, str(s)) for w in ("w1", "w2") for s in range(segments)})
    first.catalog.close()  # type: ignore[attr-defined]


# --- maintenance and reading -----------------------------------------------------------


def test_scan_plan_and_drop(sink: IcebergSink) -> None:
    land(sink, users(range(4), "a"), sync_id="s", segment=0)
    assert sink.scan_arrow(NS, "users", ["name"]).read_all().column_names == ["name"]
    files = sink.planned_parquet_files(NS, "users")
    assert files and all(f.startswith("file://") for f in files)
    land(sink, orders([1], "x"), sync_id="s", segment=0)
    location = Path(sink.catalog.load_table((NS, "users")).location().removeprefix("file://"))
    assert location.exists()
    assert sink.drop_table(NS, "users")
    assert not location.exists()
    assert not sink.drop_table(NS, "users")
    assert sink.drop_namespace_tables(NS) == ["orders"]
    assert sink.all_tables() == []
    assert sink.drop_namespace_tables(NS) == []
    with pytest.raises(Exception, match="does not exist"):
        sink.scan_arrow(NS, "users")


# --- PostgreSQL ------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_catalog_merge_state_and_full_refresh(tmp_path: Path) -> None:
    url = os.environ.get(
        "RAWQUERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    namespace = f"rqtest_{uuid.uuid4().hex[:10]}"
    catalog = new_catalog(url, (tmp_path / "warehouse").as_uri())
    pg = IcebergSink(catalog)
    try:
        assert land(pg, users(range(5), "a"), sync_id="s1", segment=0, namespace=namespace,
                    state={"rq.cursor": "5"})  # fmt: skip
        assert land(pg, users(range(3, 8), "b"), sync_id="s2", segment=0, namespace=namespace)
        assert not land(pg, users(range(3, 8), "b"), sync_id="s2", segment=0, namespace=namespace)
        assert rows(pg, "users", "id", "name", namespace=namespace) == [
            (0, "a0"), (1, "a1"), (2, "a2"), (3, "b3"), (4, "b4"), (5, "b5"), (6, "b6"), (7, "b7")
        ]  # fmt: skip
        assert pg.committed_state(namespace, "users")["rq.sync_id"] == "s2"
        files = pg.write_files(
            namespace, "users", users(range(2), "f").data, sync_id="f", segment=0
        )
        assert pg.stage_replace(namespace, "users", files, sync_id="f", segment=0)
        assert pg.finish_replace(namespace, "users", sync_id="f", state={"rq.cursor": "9"})
        assert rows(pg, "users", "id", namespace=namespace) == [(0,), (1,)]
        assert pg.committed_state(namespace, "users")["rq.cursor"] == "9"
    finally:
        pg.drop_namespace_tables(namespace)
        catalog.close()


def test_column_names_with_dots_are_plain_columns(sink: IcebergSink) -> None:
    first = make_batch("t", {"a.b": pa.array([1, 2], pa.int64())}, keys=("a.b",))
    land(sink, first, sync_id="s", segment=0)
    second = make_batch("t", {"a.b": pa.array([2], pa.int64()), "c.d": ["x"]}, keys=("a.b",))
    assert sink.prepare(NS, second) == ["added column 'c.d' (string)"]
    land(sink, second, sync_id="s", segment=1)
    assert rows(sink, "t", "a.b", "c.d") == [(1, None), (2, "x")]
