"""Item 1 in distributed mode: 30% of the API's answers are faults while two `rq worker`
processes sync two streams; the tables still end equal to the API's data."""

from __future__ import annotations

import pytest

from tests.distributed.conftest import Dist
from tests.reliability.dist_support import RqWorkers, create_connection
from tests.reliability.support import FakeApi, assert_exact, items_spec, make_records
from tests.support.api_server import ApiServer

pytestmark = [pytest.mark.reliability, pytest.mark.distributed, pytest.mark.redis]
READ_TIMEOUT = 0.4


def test_faulty_api_two_workers_end_exact(
    dist: Dist,
    rq_workers: RqWorkers,
    api_server: ApiServer,
) -> None:
    records = make_records(90, seed=5)
    api = FakeApi(records, faults=0.3, seed=4, slow=READ_TIMEOUT * 2.5)  # all kinds early
    api_server.route("/items", api.handler)
    api_server.route("/other", api.handler)
    create_connection(
        "dfaulty", items_spec(api_server.url, streams=("items", "other"), page_size=7)
    )
    rq_workers.read_timeout = READ_TIMEOUT
    rq_workers.start(2)

    first = dist.rq("connections", "sync", "dfaulty")
    assert first.returncode == 0, first.stdout + first.stderr
    assert_exact("dfaulty", "items", records)
    assert_exact("dfaulty", "other", records)

    # The API changes (updates and new rows); an incremental sync under the same faults.
    for rec in records[::4]:
        rec["name"] += "-v2"
        rec["updated_at"] += 10_000
    records += make_records(25, start=91)
    second = dist.rq("connections", "sync", "dfaulty")
    assert second.returncode == 0, second.stdout + second.stderr
    assert_exact("dfaulty", "items", records)
    assert_exact("dfaulty", "other", records)

    kinds = set(api.injected)
    served = api.served
    print(f"distributed faults: {len(api.injected)} of {served} requests, kinds {sorted(kinds)}")
    assert {"500", "502", "503", "429", "reset", "slow"} <= kinds, kinds
    assert 0.15 < len(api.injected) / served < 0.45
