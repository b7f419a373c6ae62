"""What other engines need from our tables (sink/layout.py, docs/decisions/010): Parquet
field ids, required key columns declared as identifier fields, partition specs whose every
file holds one partition value, sort orders. Against a real SqlCatalog, like test_sink."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.expressions import EqualTo
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.typedef import Record
from pyiceberg.types import ListType, LongType, NestedField, StringType, StructType

from rawquery_workers.errors import SinkError
from rawquery_workers.sink import IcebergSink, new_catalog
from rawquery_workers.sink.maintenance import Policy, maintain_table
from rawquery_workers.sink.schema import FIELD_ID, arrow_schema
from rawquery_workers.sink.table_files import MAX_OPEN_FILES
from rawquery_workers.transform.batch import Layout, TableBatch
from tests.test_sink import NS, land, make_batch, rows

TS = pa.timestamp("us", tz="UTC")
LAYOUT = Layout((("identity", "status"), ("day", "created_at")), ("id",))
EPOCH_DAY_2024_03_01 = 19783


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[IcebergSink]:
    catalog = new_catalog(f"sqlite:///{tmp_path / 'c.db'}", (tmp_path / "wh").as_uri())
    yield IcebergSink(catalog)
    catalog.close()


def day(n: int) -> datetime:
    return datetime(2024, 3, 1, 12, tzinfo=UTC) + timedelta(days=n)


def orders(records: list[tuple[int, str | None, int, str]], layout: Layout = LAYOUT) -> TableBatch:
    """Order rows (id, status, day number, note) of a stream laid out by `layout`."""
    ids, status, days, notes = zip(*records, strict=True)
    batch = make_batch(
        "orders",
        {
            "id": pa.array(ids, pa.int64()),
            "status": pa.array(status, pa.string()),
            "created_at": pa.array([day(d) for d in days], TS),
            "note": list(notes),
        },
        keys=("id",),
    )
    return dataclasses.replace(batch, layout=layout)


def load(sink: IcebergSink, table: str = "orders") -> Table:
    return sink.catalog.load_table((NS, table))


def local(path: str) -> str:
    return path.removeprefix("file://")


def partitions_of_files(sink: IcebergSink) -> list[Record]:
    """Each live file's partition record, checked against the rows the file holds."""
    found = []
    for task in load(sink).scan().plan_files():
        data = pq.read_table(local(task.file.file_path))
        statuses = set(data.column("status").to_pylist())
        days = {(d - day(0)).days for d in data.column("created_at").to_pylist()}
        assert len(statuses) == 1 and len(days) == 1, task.file.file_path
        (status,), (n,) = statuses, days
        assert task.file.partition == Record(status, EPOCH_DAY_2024_03_01 + n)
        ids = {f.name: int(f.metadata[FIELD_ID]) for f in data.schema}
        assert ids == {n: load(sink).schema().find_field(n).field_id for n in ids}
        found.append(task.file.partition)
    return found


def test_a_keyed_partitioned_table_has_one_partition_per_file_through_merges(
    sink: IcebergSink,
) -> None:
    first = orders([(1, "open", 0, "a"), (2, "open", 0, "b"), (3, "closed", 0, "c"),
                    (4, "open", 1, "d"), (5, None, 1, "e"), (6, "open", 1, "f")])  # fmt: skip
    assert sink.prepare(NS, first) == [
        "created table shop.orders with 7 columns",
        "partitioned by status, day(created_at)",
        "sort order id",
    ]
    table = load(sink)
    assert [(str(f.transform), f.name) for f in table.spec().fields] == [
        ("identity", "status"),
        ("day", "_rq_created_at_day"),
    ]
    (sorted_by,) = table.sort_order().fields
    assert sorted_by.source_id == table.schema().find_field("id").field_id
    assert table.schema().identifier_field_names() == {"id"}
    assert land(sink, first, sync_id="s1", segment=0)
    assert len(partitions_of_files(sink)) == 4  # open/0, closed/0, open/1, null/1

    # a merge: 2 moves to another partition, 4 changes in place, 7 is new
    second = orders([(2, "closed", 2, "b2"), (4, "open", 1, "d2"), (7, None, 1, "g")])
    assert sink.prepare(NS, second) == []
    assert land(sink, second, sync_id="s2", segment=0)
    assert rows(sink, "orders", "id", "status", "note") == [
        (1, "open", "a"), (2, "closed", "b2"), (3, "closed", "c"), (4, "open", "d2"),
        (5, None, "e"), (6, "open", "f"), (7, None, "g"),
    ]  # fmt: skip
    assert len(set(map(tuple, map(_values, partitions_of_files(sink))))) == 5
    opened = load(sink).scan(row_filter=EqualTo("status", "open")).to_arrow()
    assert sorted(opened.column("id").to_pylist()) == [1, 4, 6]


def _values(record: Record) -> list[object]:
    return [record[i] for i in range(len(record))]


def test_rows_are_sorted_within_each_chunk(sink: IcebergSink) -> None:
    batch = orders([(n, "open", 0, str(n)) for n in (5, 3, 9, 1)])
    land(sink, batch, sync_id="s1", segment=0)
    (task,) = load(sink).scan().plan_files()
    assert pq.read_table(local(task.file.file_path)).column("id").to_pylist() == [1, 3, 5, 9]


def test_more_partitions_than_open_files_in_one_segment(sink: IcebergSink) -> None:
    many = 2 * MAX_OPEN_FILES + 3
    first = orders([(n, "open", n, "a") for n in range(many)])
    sink.prepare(NS, first)
    files = sink.open_files(NS, "orders", sync_id="s1", segment=0, keys=("id",))
    known = sink.known_schema(NS, "orders")
    assert known is not None and known.layout == LAYOUT
    for label in ("a", "b"):  # the second chunk reopens partitions closed in between
        files.write(orders([(n, "open", n, label) for n in range(many)]).data, known)
    paths = files.close()
    assert len(paths) >= many
    assert sink.commit(NS, "orders", paths, mode="merge", sync_id="s1", segment=0)
    assert rows(sink, "orders", "id", "note") == [(n, "b") for n in range(many)]
    assert len(partitions_of_files(sink)) == len(paths)


def test_a_table_created_without_rows_is_laid_out_when_its_columns_get_types(
    sink: IcebergSink,
) -> None:
    empty = make_batch(
        "orders", {"id": pa.array([], pa.string())}, keys=("id",), retypable=frozenset({"id"})
    )
    sink.prepare(NS, dataclasses.replace(empty, layout=LAYOUT))
    table = load(sink)
    assert table.spec().is_unpartitioned() and not table.schema().identifier_field_ids
    land(sink, dataclasses.replace(empty, layout=LAYOUT), sync_id="s0", segment=0)

    first = orders([(1, "open", 0, "a"), (2, "closed", 1, "b")])
    changes = sink.prepare(NS, first)
    assert changes[-2:] == ["partitioned by status, day(created_at)", "sort order id"]
    table = load(sink)
    assert table.schema().identifier_field_names() == {"id"}
    assert table.schema().find_field("id").required
    assert [f.name for f in table.spec().fields] == ["status", "_rq_created_at_day"]
    assert land(sink, first, sync_id="s1", segment=0)
    assert len(partitions_of_files(sink)) == 2


def test_a_table_that_holds_rows_keeps_its_layout(sink: IcebergSink) -> None:
    plain = orders([(1, "open", 0, "a")], Layout())
    land(sink, plain, sync_id="s1", segment=0)
    wider = orders([(2, "open", 0, "b")])
    wider = dataclasses.replace(wider, data=wider.data.append_column("extra", pa.array(["x"])))
    assert sink.prepare(NS, wider) == ["added column 'extra' (string)"]
    assert load(sink).spec().is_unpartitioned()
    assert land(sink, wider, sync_id="s2", segment=0)
    assert rows(sink, "orders", "id", "note") == [(1, "a"), (2, "b")]


def test_layout_columns_the_records_lack_or_that_have_the_wrong_type(sink: IcebergSink) -> None:
    lacking = orders([(1, "open", 0, "a")], Layout((("identity", "state"),)))
    with pytest.raises(SinkError) as info:
        sink.prepare(NS, lacking)
    assert str(info.value).startswith(
        "shop.orders: partition_by/sort_by name 'state', which no record of this sync has a "
        "value for"
    )
    wrong = orders([(1, "open", 0, "a")], Layout((("day", "note"),)))
    with pytest.raises(SinkError, match=r"day\(note\) needs a timestamp or date column, but "):
        sink.prepare(NS, wrong)
    instants = orders([(1, "open", 0, "a")], Layout((("identity", "created_at"),)))
    with pytest.raises(SinkError, match="one partition per instant"):
        sink.prepare(NS, instants)
    assert sink.known_schema(NS, "orders") is None  # nothing was created


def test_files_written_after_a_retype_carry_the_new_field_id(sink: IcebergSink) -> None:
    first = make_batch(
        "people",
        {"id": pa.array([1], pa.int64()), "age": pa.nulls(1, pa.string())},
        keys=("id",),
        retypable=frozenset({"age"}),
    )
    land(sink, first, sync_id="s1", segment=0)
    old_id = load(sink, "people").schema().find_field("age").field_id
    second = make_batch(
        "people", {"id": pa.array([2], pa.int64()), "age": pa.array([40], pa.int64())}, keys=("id",)
    )
    sink.prepare(NS, second)
    files = sink.write_files(NS, "people", second.data, sync_id="s2", segment=0)
    new_id = load(sink, "people").schema().find_field("age").field_id
    written = pq.read_schema(local(files[0])).field("age")
    assert new_id != old_id and int(written.metadata[FIELD_ID]) == new_id
    assert load(sink, "people").schema().identifier_field_names() == {"id"}  # kept


def test_arrow_schema_gives_nested_fields_their_ids() -> None:
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "tags", ListType(3, StringType(), element_required=False)),
        NestedField(4, "owner", StructType(NestedField(5, "name", StringType()))),
    )
    arrow = arrow_schema(schema)
    assert [int(f.metadata[FIELD_ID]) for f in arrow] == [1, 2, 4]
    assert not arrow.field("id").nullable
    assert arrow.field("tags").type.value_field.metadata[FIELD_ID] == b"3"
    assert arrow.field("owner").type.field(0).metadata[FIELD_ID] == b"5"


def test_an_append_table_partitioned_by_the_day_it_was_synced(sink: IcebergSink) -> None:
    by_sync_day = Layout((("day", "_rq_synced_at"),))
    batch = dataclasses.replace(
        make_batch("events", {"id": pa.array([1, 2], pa.int64())}), layout=by_sync_day
    )
    assert sink.prepare(NS, batch)[1:] == ["partitioned by day(_rq_synced_at)"]
    for n in range(2):
        files = sink.write_files(NS, "events", batch.data, sync_id=f"s{n}", segment=0,
                                 synced_at=day(n))  # fmt: skip
        assert sink.commit(NS, "events", files, mode="append", sync_id=f"s{n}", segment=0)
    records = sorted(task.file.partition[0] for task in load(sink, "events").scan().plan_files())
    assert records == [EPOCH_DAY_2024_03_01, EPOCH_DAY_2024_03_01 + 1]
    assert rows(sink, "events", "id") == [(1,), (1,), (2,), (2,)]


def test_compaction_of_a_partitioned_table_keeps_one_partition_per_file(
    sink: IcebergSink,
) -> None:
    # pyiceberg writes the compacted files itself; day() partitions need pyiceberg-core
    for segment in range(3):
        records = [
            (n, "open" if n % 2 else "paid", n % 3, "x")
            for n in range(segment * 6, segment * 6 + 6)
        ]
        land(sink, orders(records), sync_id="s1", segment=segment)
    before = len(partitions_of_files(sink))
    report = maintain_table(sink.tables, NS, "orders", Policy())
    assert report.compacted == before
    assert len(partitions_of_files(sink)) == 6  # two statuses x three days
    assert [r[0] for r in rows(sink, "orders", "id")] == list(range(18))
