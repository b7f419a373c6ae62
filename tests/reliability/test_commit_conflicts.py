"""Item 4: two writers commit to the same Iceberg table at once (the connection lock
bypassed): each commit is re-planned on a conflict; nothing is lost or doubled."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest

from rawquery_workers.registry import open_registry
from rawquery_workers.runner.context import ConnectionContext
from rawquery_workers.runner.sync import run_stream
from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.sink import open_sink
from rawquery_workers.transform.batch import TableBatch
from tests.reliability.support import (
    FakeApi,
    assert_exact,
    items_spec,
    make_records,
    rq,
    write_json,
)
from tests.reliability.tally import TALLY
from tests.support.api_server import ApiServer

pytestmark = pytest.mark.reliability


def _race(*targets: object) -> None:
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrap(fn: object) -> None:
        barrier.wait()
        try:
            fn()  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_two_syncs_of_one_stream_race(
    rq_home: Path, api_server: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = make_records(80)
    api = FakeApi(records)
    api_server.route("/items", api.handler)
    write_json(rq_home.parent / "spec.json", items_spec(api_server.url, page_size=5))
    assert rq("connect", "race", "--spec", "spec.json").code == 0
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "10")
    reset_settings()
    registry = open_registry()
    ids = [registry.create_sync("race", ["items"]) for _ in range(2)]
    outcomes: list[object] = []

    def sync(sync_id: str) -> None:
        with ConnectionContext("race", registry=registry) as conn:
            outcomes.append(run_stream(conn, sync_id, "items", False))

    _race(*(lambda i=i: sync(i) for i in ids))  # past the lease: only the fence is left
    TALLY.faults_injected += 1
    statuses = sorted(o.status for o in outcomes)  # type: ignore[attr-defined]
    assert statuses == ["failed", "succeeded"], outcomes
    loser = next(o for o in outcomes if o.status == "failed")  # type: ignore[attr-defined]
    assert "stops without writing" in loser.error  # type: ignore[attr-defined]
    assert_exact("race", "items", records)  # the winner's rows, nothing of the loser's


def test_concurrent_appends_and_merges_on_one_table(rq_home: Path) -> None:
    sink = open_sink(get_settings())
    sink.catalog.create_namespace_if_not_exists("conflict")
    writers = 4
    per_writer = 50

    def batch(writer: int, keys: range, name: str) -> TableBatch:
        data = pa.table(
            {
                "id": pa.array(list(keys), pa.int64()),
                "writer": pa.array([writer] * len(keys), pa.int64()),
                "_rq_rejected": pa.array([None] * len(keys), pa.string()),
                "_rq_key": pa.array([str(k) for k in keys], pa.string()),
            }
        )
        return TableBatch(name, data, keys=("id",) if name == "merged" else ())

    for name in ("appended", "merged"):
        sink.prepare("conflict", batch(0, range(1), name))

    def write(writer: int) -> None:
        appended = batch(writer, range(writer * per_writer, (writer + 1) * per_writer), "appended")
        merged = batch(writer, range(0, per_writer), "merged")  # every writer: the same keys
        for name, tb, mode in (("appended", appended, "append"), ("merged", merged, "merge")):
            files = sink.write_files("conflict", name, tb.data, sync_id=f"w{writer}", segment=0)
            sink.commit("conflict", name, files, mode=mode, sync_id=f"w{writer}", segment=0)

    _race(*(lambda w=w: write(w) for w in range(writers)))
    TALLY.faults_injected += writers - 1
    appended = sink.scan_arrow("conflict", "appended").read_all().to_pylist()
    assert sorted(r["id"] for r in appended) == list(range(writers * per_writer))
    merged = sink.scan_arrow("conflict", "merged").read_all().to_pylist()
    assert sorted(r["id"] for r in merged) == list(range(per_writer))
    assert len({r["writer"] for r in merged}) == 1  # one writer's whole segment won, not a mix
