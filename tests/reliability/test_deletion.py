"""Item 8: deleting a connection or changing its streams never drops data by itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawquery_workers.registry import open_registry
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


def _setup(rq_home: Path, api_server: ApiServer) -> list[dict]:
    records = make_records(25)
    api = FakeApi(records)
    for path in ("/items", "/other", "/renamed"):
        api_server.route(path, api.handler)
    write_json(rq_home.parent / "spec.json", items_spec(api_server.url, streams=("items", "other")))
    assert rq("connect", "keep", "--spec", "spec.json").code == 0
    assert rq("connections", "sync", "keep").code == 0
    return records


def test_delete_without_drop_tables_keeps_data(rq_home: Path, api_server: ApiServer) -> None:
    records = _setup(rq_home, api_server)
    result = rq("connections", "delete", "keep")
    assert result.code == 0, result.text
    assert rq("connections", "status", "keep").code == 2
    assert_exact("keep", "items", records)
    assert_exact("keep", "other", records)
    query = rq("query", "SELECT count(*) AS n FROM keep.items", "--format", "json")
    assert query.code == 0 and "25" in query.out, query.text


def test_update_removing_or_renaming_a_stream_keeps_its_table(
    rq_home: Path, api_server: ApiServer
) -> None:
    records = _setup(rq_home, api_server)
    spec = items_spec(api_server.url, streams=("renamed",))
    write_json(rq_home.parent / "new.json", spec)
    result = rq("connections", "update", "keep", "--spec", "new.json")
    assert result.code == 0, result.text
    assert rq("connections", "sync", "keep").code == 0
    assert_exact("keep", "items", records)
    assert_exact("keep", "other", records)
    assert_exact("keep", "renamed", records)


def test_update_with_invalid_spec_changes_nothing(rq_home: Path, api_server: ApiServer) -> None:
    records = _setup(rq_home, api_server)
    before = open_registry().get_connection("keep")
    bad = items_spec(api_server.url, streams=("items",))
    bad["streams"][0]["pagination"]["type"] = "pages"
    write_json(rq_home.parent / "bad.json", bad)
    result = rq("connections", "update", "keep", "--spec", "bad.json", "--schedule", "daily")
    assert result.code == 2, result.text
    assert "streams[0].pagination.type" in result.err
    after = open_registry().get_connection("keep")
    assert (after.spec, after.schedule, after.updated_at) == (
        before.spec,
        before.schedule,
        before.updated_at,
    )
    assert_exact("keep", "items", records)
    assert_exact("keep", "other", records)
