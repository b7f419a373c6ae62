"""A private PostgreSQL schema per test, on the server named by RAWQUERY_TEST_POSTGRES_URL."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

POSTGRES_URL = os.environ.get(
    "RAWQUERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextlib.contextmanager
def private_schema_url(prefix: str) -> Iterator[str]:
    """A database URL whose search_path is a new schema, dropped (with all in it) afterwards.

    Skips the test when no server answers at the default URL; fails it when the URL was set
    explicitly (CI sets it: a missing server there is an error, not a skip)."""
    admin = create_engine(POSTGRES_URL)
    try:
        admin.connect().close()
    except OperationalError:
        admin.dispose()
        if "RAWQUERY_TEST_POSTGRES_URL" in os.environ:
            raise
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL} (set RAWQUERY_TEST_POSTGRES_URL)")
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
