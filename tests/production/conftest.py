"""Fixtures of the production configuration: PostgreSQL catalog + registry, S3 warehouse.

`production_env` is the environment an operator's `.env` would give the containers, pointed
at a private PostgreSQL schema and a private bucket on a local S3 stand-in (moto's server).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.support import s3_server as s3
from tests.support.postgres import private_schema_url

WAREHOUSE_PREFIX = "warehouse"


@dataclass(frozen=True)
class Production:
    env: dict[str, str]
    catalog_uri: str
    bucket: str
    s3: s3.S3Server

    @property
    def warehouse(self) -> str:
        return f"s3://{self.bucket}/{WAREHOUSE_PREFIX}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s3.S3Server]:
    if not s3.moto_available():
        pytest.skip('moto is not installed (pip install -e ".[test]")')
    with s3.S3Server(log_dir=tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def pg_schema_uri() -> Iterator[str]:
    """A catalog URI whose search_path is a private, new schema (dropped afterwards)."""
    # Sessions of the test's subprocesses are gone when the schema is dropped.
    with private_schema_url("rqprod") as url:
        yield url


@pytest.fixture
def production(tmp_path: Path, pg_schema_uri: str, s3_server: s3.S3Server) -> Iterator[Production]:
    """Environment for `rq` subprocesses: PostgreSQL catalog, s3:// warehouse, no Redis."""
    bucket = f"rq-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAWQUERY_", "AWS_"))}
    env.update(
        {
            "RAWQUERY_HOME": str(tmp_path / "rqhome"),
            "RAWQUERY_CATALOG_URI": pg_schema_uri,
            "RAWQUERY_WAREHOUSE": f"s3://{bucket}/{WAREHOUSE_PREFIX}",
            "RAWQUERY_S3_ENDPOINT": s3_server.endpoint,
            "RAWQUERY_S3_ACCESS_KEY_ID": s3.ACCESS_KEY_ID,
            "RAWQUERY_S3_SECRET_ACCESS_KEY": s3.SECRET_ACCESS_KEY,
            "RAWQUERY_S3_REGION": s3.REGION,
            "RAWQUERY_SECRET_KEY": Fernet.generate_key().decode(),
            "NO_COLOR": "1",
        }
    )
    yield Production(env=env, catalog_uri=pg_schema_uri, bucket=bucket, s3=s3_server)
