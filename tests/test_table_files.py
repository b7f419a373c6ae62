"""A segment's files written a chunk at a time (sink/table_files.py, segment.py), against a
real SqlCatalog: file sizes, schema changes mid-segment, the last row per key across chunks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rawquery_workers.runner.segment import SegmentWriter
from rawquery_workers.sink import IcebergSink, new_catalog
from rawquery_workers.sink.table_files import TableFiles
from rawquery_workers.spec.models import Stream
from rawquery_workers.transform.columnar import PageBodies
from tests.test_sink import NS, make_batch, rows, users

SYNCED = pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[IcebergSink]:
    catalog = new_catalog(f"sqlite:///{tmp_path / 'c.db'}", (tmp_path / "wh").as_uri())
    yield IcebergSink(catalog)
    catalog.close()


def open_users(sink: IcebergSink, segment: int = 0, keys: tuple[str, ...] = ("id",)) -> TableFiles:
    return sink.open_files(NS, "users", sync_id="s", segment=segment, synced_at=SYNCED, keys=keys)


def write_chunks(sink: IcebergSink, chunks: list[pa.Table], segment: int = 0) -> list[str]:
    files = open_users(sink, segment)
    for chunk in chunks:
        known = sink.known_schema(NS, "users")
        assert known is not None
        files.write(chunk, known)
    return files.close()


def commit(sink: IcebergSink, files: list[str], segment: int = 0) -> None:
    assert sink.commit(NS, "users", files, mode="merge", sync_id="s", segment=segment)


def local(path: str) -> str:
    return path.removeprefix("file://")


def test_chunks_share_one_file_as_row_groups(sink: IcebergSink) -> None:
    sink.prepare(NS, users(range(1), "u"))
    files = write_chunks(sink, [users(range(n, n + 100), "u").data for n in range(0, 500, 100)])
    assert len(files) == 1
    assert pq.ParquetFile(local(files[0])).metadata.num_row_groups == 5
    commit(sink, files)
    assert len(rows(sink, "users", "id")) == 500


def test_files_roll_at_the_target_size(sink: IcebergSink) -> None:
    sink.prepare(NS, users(range(1), "u"))
    chunk = users(range(100), "u").data
    small = IcebergSink(sink.catalog, target_file_size=chunk.nbytes * 2)
    files = small.open_files(NS, "users", sync_id="s", segment=0, synced_at=SYNCED, keys=("id",))
    known = sink.known_schema(NS, "users")
    assert known is not None
    for n in range(0, 1000, 100):
        files.write(users(range(n, n + 100), "u").data, known)
    paths = files.close()
    # ten chunks of about 0.7 x the target once conformed (with _rq_synced_at): 7 files
    assert 5 <= len(paths) <= 8
    commit(sink, paths)
    assert len(rows(sink, "users", "id")) == 1000


def test_a_key_repeated_in_a_later_chunk_keeps_the_later_row(sink: IcebergSink) -> None:
    sink.prepare(NS, users(range(1), "u"))
    files = write_chunks(
        sink,
        [
            users(range(0, 100), "a").data,
            users(range(100, 200), "b").data,
            users(range(150, 250), "c").data,  # a page shifted: 150-199 again, newer
        ],
    )
    commit(sink, files)
    got = dict(rows(sink, "users", "id", "name"))
    assert len(got) == 250
    assert got[99] == "a99" and got[149] == "b149" and got[150] == "c150" and got[249] == "c249"
    assert not any(Path(local(f)).name.endswith("-0.parquet") for f in files)  # rewritten
    left = sorted(p.name for p in Path(local(files[0])).parent.iterdir())
    assert len(left) == len(files)  # the superseded file is gone


def test_disjoint_chunks_are_not_read_back(sink: IcebergSink) -> None:
    """Numeric keys compare as numbers: 1-9 then 10-19 do not overlap (as text they would)."""
    sink.prepare(NS, users(range(1), "u"))
    files = write_chunks(sink, [users(range(1, 10), "a").data, users(range(10, 20), "b").data])
    assert [Path(local(f)).name.endswith("-0.parquet") for f in files] == [True]
    commit(sink, files)
    assert len(rows(sink, "users", "id")) == 19


def test_rows_without_a_key_all_stay(sink: IcebergSink) -> None:
    # Key columns are required in tables rawquery creates keyed; one created otherwise (by an
    # older rawquery, or another engine) may hold rows without a key.
    sink.prepare(NS, dataclasses.replace(users(range(1), "u"), keys=()))

    def chunk(ids: list[int | None], label: str) -> pa.Table:
        data = make_batch(
            "users",
            {"id": pa.array(ids, pa.int64()), "name": [f"{label}{i}" for i in ids]},
            keys=("id",),
        ).data
        return data

    files = write_chunks(sink, [chunk([1, None, 2], "a"), chunk([None, 2, 3], "b")])
    commit(sink, files)
    data = sink.scan_arrow(NS, "users", ["id", "name"]).read_all()
    got = sorted(
        zip(data.column("id").to_pylist(), data.column("name").to_pylist(), strict=True), key=str
    )
    want = [(1, "a1"), (None, "aNone"), (None, "bNone"), (2, "b2"), (3, "b3")]
    assert got == sorted(want, key=str)


def test_a_column_added_mid_segment_opens_a_new_file(sink: IcebergSink) -> None:
    first = users(range(0, 10), "a")
    sink.prepare(NS, first)
    wider = make_batch(
        "users",
        {"id": pa.array(range(10, 20), pa.int64()), "name": ["b"] * 10, "age": list(range(10))},
        keys=("id",),
    )
    files = open_users(sink)
    known = sink.known_schema(NS, "users")
    assert known is not None
    files.write(first.data, known)
    sink.prepare(NS, wider)
    known = sink.known_schema(NS, "users")
    assert known is not None
    files.write(wider.data, known)
    files.write(users(range(20, 30), "c").data, known)  # lacks age: goes to the open file
    paths = files.close()
    assert len(paths) == 2
    assert "age" not in pq.read_schema(local(paths[0])).names
    assert pq.read_table(local(paths[1])).column("age").null_count == 10
    commit(sink, paths)
    ages = dict(rows(sink, "users", "id", "age"))
    assert ages[5] is None and ages[15] == 5 and ages[25] is None


def stream(**extra: object) -> Stream:
    return Stream.model_validate(
        {"name": "users", "endpoint": "/u", "primary_key": ["id"], **extra}
    )


def test_segment_writer_evolves_between_chunks_and_reports_changes(sink: IcebergSink) -> None:
    with SegmentWriter(
        stream(), sink, NS, since=None, max_cursor=None, sync_id="s", segment=0, synced_at=SYNCED
    ) as segment:
        segment.add([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        segment.add([{"id": 3, "name": "c", "score": 1.5}])
        segment.add([{"id": 2, "name": "B"}])
        (table,) = segment.finish()
    assert table.name == "users" and table.rows == 4
    assert any("created table" in c for c in segment.schema_changes)
    assert any("score" in c for c in segment.schema_changes)
    commit(sink, table.files)
    assert rows(sink, "users", "id", "name", "score") == [
        (1, "a", None),
        (2, "B", None),
        (3, "c", 1.5),
    ]


def test_segment_writer_failure_closes_files_and_keeps_nothing_visible(
    sink: IcebergSink,
) -> None:
    with (
        pytest.raises(ZeroDivisionError),
        SegmentWriter(
            stream(), sink, NS, since=None, max_cursor=None, sync_id="s", segment=0,
            synced_at=SYNCED,
        ) as segment,
    ):  # fmt: skip
        segment.add([{"id": 1, "name": "a"}])
        segment.add([{"id": 2, "name": "b"}])  # the first chunk's file opens now
        raise ZeroDivisionError
    assert rows(sink, "users", "id") == []
    assert sink.cleanup_orphans(NS, "users", "s")  # the open file was closed and is found


def orders_stream() -> Stream:
    return stream(
        name="orders",
        expand={"line_items": {"primary_key": "id", "parent_key": "order_id"}},
    )


def order(n: int, items: list[int], label: str) -> dict[str, object]:
    return {"id": n, "name": f"{label}{n}", "line_items": [{"id": i, "sku": label} for i in items]}


def land_segment(sink: IcebergSink, chunks: list[list[dict[str, object]]]) -> None:
    with SegmentWriter(
        orders_stream(), sink, NS, since=None, max_cursor=None, sync_id="s", segment=0,
        synced_at=SYNCED,
    ) as segment:  # fmt: skip
        for chunk in chunks:
            segment.add(chunk)
        tables = segment.finish()
    for table in sorted(tables, key=lambda t: t.parent is None):  # children first
        assert sink.commit(
            NS, table.name, table.files, mode="merge", key_column="id",
            parent_key_column=table.parent_key, parent_keys=table.parent_keys,
            sync_id="s", segment=0,
        )  # fmt: skip


def test_a_parent_sent_again_by_a_later_chunk_keeps_only_its_new_children(
    sink: IcebergSink,
) -> None:
    land_segment(
        sink,
        [
            [order(1, [10, 11], "a"), order(2, [20], "a")],
            [order(3, [30], "b")],
            [order(1, [10], "c")],  # order 1 again: item 11 is gone, item 10 changed
            [order(2, [], "d")],  # order 2 again, now without items
        ],
    )
    assert rows(sink, "orders", "id", "name") == [(1, "c1"), (2, "d2"), (3, "b3")]
    assert rows(sink, "orders_line_items", "order_id", "id", "sku") == [(1, 10, "c"), (3, 30, "b")]


def test_parents_in_key_order_leave_their_children_files_alone(sink: IcebergSink) -> None:
    land_segment(sink, [[order(n, [n * 10], "a")] for n in range(1, 6)])
    data = sink.scan_arrow(NS, "orders_line_items", ["id"]).read_all()
    assert sorted(data.column("id").to_pylist()) == [10, 20, 30, 40, 50]
    files = sink.planned_parquet_files(NS, "orders_line_items")
    assert files is not None and len(files) == 1
    assert all(not f.endswith("-last.parquet") for f in files)  # nothing was rewritten


def pages_of(*pages: list[dict[str, object]]) -> PageBodies:
    return PageBodies([orjson.dumps({"data": p}) for p in pages], [len(p) for p in pages], "data")


def never() -> list[dict]:
    raise AssertionError("the records were parsed again although Arrow read the bodies")


def test_segment_writer_reads_page_bodies_without_parsing_the_records(sink: IcebergSink) -> None:
    chunks = [
        [order(1, [10, 11], "a"), order(2, [20], "a")],
        [order(3, [30], "b"), order(1, [10], "c")],
    ]
    with SegmentWriter(
        orders_stream(), sink, NS, since=None,
        max_cursor=None, sync_id="s", segment=0, synced_at=SYNCED,
    ) as segment:  # fmt: skip
        for chunk in chunks:
            segment.add(never, pages_of(chunk[:1], chunk[1:]))
        tables = segment.finish()
    assert [(t.name, t.rows) for t in tables] == [("orders", 4), ("orders_line_items", 5)]
    for table in sorted(tables, key=lambda t: t.parent is None):
        assert sink.commit(
            NS, table.name, table.files, mode="merge", key_column="id",
            parent_key_column=table.parent_key, parent_keys=table.parent_keys,
            sync_id="s", segment=0,
        )  # fmt: skip
    assert rows(sink, "orders", "id", "name") == [(1, "c1"), (2, "a2"), (3, "b3")]
    assert rows(sink, "orders_line_items", "order_id", "id", "sku") == [
        (1, 10, "c"), (2, 20, "a"), (3, 30, "b"),
    ]  # fmt: skip


def test_segment_writer_parses_records_again_when_arrow_cannot_read_them(
    sink: IcebergSink,
) -> None:
    calls = []
    chunk = [{"id": 1, "name": "a"}, {"id": 2, "name": 5}]  # name: a string, then a number

    def parse() -> list[dict]:
        calls.append(1)
        return [dict(r) for r in chunk]

    with SegmentWriter(
        stream(), sink, NS, since=None, max_cursor=None, sync_id="s",
        segment=0, synced_at=SYNCED,
    ) as segment:  # fmt: skip
        segment.add(parse, pages_of(chunk))
        (table,) = segment.finish()
    assert calls == [1]
    assert sink.commit(NS, "users", table.files, mode="merge", sync_id="s", segment=0)
    assert rows(sink, "users", "id", "name") == [(1, "a"), (2, "5")]
