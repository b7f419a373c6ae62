"""RAWQUERY_S3_* reach pyiceberg (catalog properties) and the staging filesystem."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyiceberg.io import load_file_io

from rawquery_workers.runner.staging import Staging
from rawquery_workers.settings import Settings
from rawquery_workers.sink import new_catalog
from tests.support import s3_server as s3


def test_fileio_properties_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAWQUERY_S3_ENDPOINT", "http://minio:9000")
    monkeypatch.setenv("RAWQUERY_S3_ACCESS_KEY_ID", "rq-key")
    monkeypatch.setenv("RAWQUERY_S3_SECRET_ACCESS_KEY", "rq-very-secret")
    settings = Settings()
    assert settings.fileio_properties == {
        "s3.endpoint": "http://minio:9000",
        "s3.access-key-id": "rq-key",
        "s3.secret-access-key": "rq-very-secret",
        "s3.region": "us-east-1",  # an endpoint without a region: never ask AWS
    }
    assert "rq-very-secret" not in repr(settings)


def test_no_s3_settings_leave_pyarrow_its_default_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ENDPOINT", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "REGION"):
        monkeypatch.delenv(f"RAWQUERY_S3_{name}", raising=False)
    assert Settings().fileio_properties == {}
    monkeypatch.setenv("RAWQUERY_S3_REGION", "eu-west-3")
    assert Settings().fileio_properties == {"s3.region": "eu-west-3"}


def test_catalog_and_staging_reach_the_bucket(s3_server: s3.S3Server, tmp_path: Path) -> None:
    bucket = "rq-settings-test"
    s3_server.create_bucket(bucket)
    fileio = {
        "s3.endpoint": s3_server.endpoint,
        "s3.access-key-id": s3.ACCESS_KEY_ID,
        "s3.secret-access-key": s3.SECRET_ACCESS_KEY,
        "s3.region": s3.REGION,
    }
    warehouse = f"s3://{bucket}/wh"
    catalog = new_catalog(f"sqlite:///{tmp_path / 'catalog.db'}", warehouse, fileio)
    try:
        assert catalog.properties["s3.endpoint"] == s3_server.endpoint
        io = load_file_io(catalog.properties, warehouse)  # what every table's FileIO gets
        output = io.new_output(f"{warehouse}/probe.txt")
        with output.create() as out:
            out.write(b"probe")
    finally:
        catalog.close()
    staging = Staging(warehouse, fileio)
    body = b'{"data": [{"id": 1}, {"id": 2}]}'
    path = staging.write_pages("sync-1", "page-0", [(body, 2)])
    assert path == f"{bucket}/wh/_rq_staging/sync-1/page-0.pages.zst"
    keys = s3_server.keys(bucket, "wh/")
    assert "wh/probe.txt" in keys
    assert "wh/_rq_staging/sync-1/page-0.pages.zst" in keys
    assert [(c.bodies, c.counts) for c in staging.read_pages(path)] == [([body], [2])]
    staging.remove("sync-1")
    assert not s3_server.keys(bucket, "wh/_rq_staging/sync-1")
