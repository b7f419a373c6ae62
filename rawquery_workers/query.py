"""`rq query`: DuckDB SQL over the Iceberg tables, named CONNECTION.STREAM.

Only the tables a query names are loaded: each becomes a DuckDB view over its pyiceberg
scan (an Arrow batch stream), so deletes, schema evolution and types are read exactly as
Iceberg defines them. Connection names may hold '-', which SQL cannot parse unquoted:
`my-api.users` is rewritten to `"my-api".users` before DuckDB sees it.
"""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa

from rawquery_workers.errors import NotFoundError, SpecError
from rawquery_workers.sink import IcebergSink

_NAME = r'(?:"(?P<{0}q>[^"]+)"|(?P<{0}>[A-Za-z0-9_][A-Za-z0-9_-]*))'
_REFERENCE = re.compile(_NAME.format("ns") + r"\s*\.\s*" + _NAME.format("tb"))


def referenced_tables(sql: str, available: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (namespace, table) pairs of `available` that `sql` names, case-insensitively."""
    lowered = {(ns.lower(), tb.lower()): (ns, tb) for ns, tb in available}
    found: list[tuple[str, str]] = []
    for match in _REFERENCE.finditer(sql):
        ns = match.group("nsq") or match.group("ns")
        tb = match.group("tbq") or match.group("tb")
        pair = lowered.get((ns.lower(), tb.lower()))
        if pair and pair not in found:
            found.append(pair)
    return found


def _quote_hyphenated(sql: str, namespaces: set[str]) -> str:
    """Quote the hyphenated namespaces (any case: SQL names are case-insensitive)."""
    for ns in sorted((n for n in namespaces if "-" in n), key=len, reverse=True):
        pattern = rf'(?<!["\w-]){re.escape(ns)}(?=\s*\.)'
        sql = re.sub(pattern, f'"{ns}"', sql, flags=re.IGNORECASE)
    return sql


def _unknown_hyphenated(sql: str, available: set[tuple[str, str]]) -> str | None:
    """A `name-with-dash.table` reference to no existing table (SQL cannot parse it)."""
    known = {(ns.lower(), tb.lower()) for ns, tb in available}
    for match in _REFERENCE.finditer(sql):
        ns, tb = match.group("ns"), match.group("tb") or match.group("tbq")
        if ns and "-" in ns and (ns.lower(), tb.lower()) not in known:
            return f"{ns}.{tb}"
    return None


def run_query(sql: str, sink: IcebergSink) -> pa.Table:
    """Run `sql` and return the result as an Arrow table."""
    available = set(sink.all_tables())
    tables = referenced_tables(sql, available)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for i, (ns, tb) in enumerate(tables):
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{ns}"')
        view = f"_rq_scan_{i}"
        con.register(view, sink.scan_arrow(ns, tb))
        con.execute(f'CREATE VIEW "{ns}"."{tb}" AS SELECT * FROM "{view}"')
    try:
        return con.sql(_quote_hyphenated(sql, {ns for ns, _ in available})).to_arrow_table()
    except duckdb.CatalogException as exc:
        names = ", ".join(sorted(f"{ns}.{tb}" for ns, tb in available)) or "none yet"
        raise NotFoundError(f"{_first_line(exc)}; tables are: {names}") from None
    except duckdb.Error as exc:
        missing = _unknown_hyphenated(sql, available)
        if isinstance(exc, duckdb.ParserException) and missing:
            names = ", ".join(sorted(f"{ns}.{tb}" for ns, tb in available)) or "none yet"
            raise NotFoundError(f"no table {missing}; tables are: {names}") from None
        raise SpecError(f"query: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]
