"""Item 1: 30% of the API's answers are faults; the tables still end equal to its data."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from rawquery_workers.http.client import build_client
from rawquery_workers.runner import context
from tests.reliability.support import (
    FakeApi,
    assert_exact,
    items_spec,
    make_records,
    rq,
    write_json,
)
from tests.support.api_server import ApiServer

pytestmark = pytest.mark.reliability
READ_TIMEOUT = 0.3


@pytest.fixture
def short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real client with a short read timeout, so a "slow" fault is a timeout."""
    monkeypatch.setattr(
        context, "build_client", functools.partial(build_client, read_timeout=READ_TIMEOUT)
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_faulty_api_ends_exact(
    seed: int, rq_home: Path, api_server: ApiServer, short_read_timeout: None
) -> None:
    records = make_records(120, seed=seed)
    api = FakeApi(records, faults=0.3, seed=seed, slow=READ_TIMEOUT * 2)
    api_server.route("/items", api.handler)
    api_server.route("/other", api.handler)
    spec = items_spec(api_server.url, streams=("items", "other"), page_size=7)
    write_json(rq_home.parent / "spec.json", spec)
    assert rq("connect", "faulty", "--spec", "spec.json").code == 0

    first = rq("connections", "sync", "faulty")
    assert first.code == 0, first.text
    assert len(api.injected) > 0
    assert_exact("faulty", "items", records)
    assert_exact("faulty", "other", records)

    # The API changes: updates and new rows arrive; an incremental sync under faults.
    for rec in records[::5]:
        rec["name"] += "-v2"
        rec["updated_at"] += 10_000
    records += make_records(30, start=121)
    second = rq("connections", "sync", "faulty")
    assert second.code == 0, second.text
    assert_exact("faulty", "items", records)
    assert_exact("faulty", "other", records)
    kinds = set(api.injected)
    assert len(kinds) >= 4, kinds
