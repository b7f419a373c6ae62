"""`rq query`: DuckDB SQL over the Iceberg tables, named CONNECTION.STREAM.

Only the tables a query names are loaded (`table_refs.py` finds and resolves them, exactly
as spelled: `cs.orders` and `CS.orders` are different tables). Each becomes a DuckDB view
over a `RescannableScan` of its current snapshot: deletes, schema evolution and types are
read exactly as Iceberg defines them, and a table may be read any number of times in one
query (self-joins, subqueries), always at the same snapshot.

The SQL reads the lake, not the disk: once the tables are registered, DuckDB's access to
files, the network and extensions is turned off and its configuration locked (`lock_down`),
so `read_text('~/.rawquery/secret.key')` or `COPY ... TO 'file'` fail. `allow_files=True`
(`rq query --allow-files`) leaves DuckDB's file access on.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from rawquery_workers.errors import NotFoundError, SpecError
from rawquery_workers.query.table_refs import Pair, quote_name, resolve_all, unknown_hyphenated
from rawquery_workers.sink import IcebergSink
from rawquery_workers.sink.scan_stream import rescannable_scan


def run_query(sql: str, sink: IcebergSink, *, allow_files: bool = False) -> pa.Table:
    """Run `sql` and return the result as an Arrow table."""
    available = sink.all_tables()
    resolved = resolve_all(sql, available)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for i, ((ns, tb), (schema, view)) in enumerate(resolved.tables.items()):
        scan = f"_rq_scan_{i}"
        con.register(scan, rescannable_scan(sink, ns, tb))
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_name(schema)}")
        con.execute(f"CREATE VIEW {quote_name(schema)}.{quote_name(view)} AS SELECT * FROM {scan}")
    if not allow_files:
        lock_down(con)
    try:
        return con.sql(resolved.sql).to_arrow_table()
    except duckdb.CatalogException as exc:
        raise NotFoundError(f"{_first_line(exc)}; tables are: {_names(available)}") from None
    except duckdb.Error as exc:
        missing = unknown_hyphenated(sql, available)
        if isinstance(exc, duckdb.ParserException) and missing:
            raise NotFoundError(f"no table {missing}; tables are: {_names(available)}") from None
        if isinstance(exc, duckdb.PermissionException) and not allow_files:
            raise SpecError(
                f"query: {_first_line(exc)}; rq query reads the synced tables only "
                "(pass --allow-files to let the SQL read and write files)"
            ) from None
        raise SpecError(f"query: {_first_line(exc)}") from None


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """No more files, network or extension installs for `con`, and no SQL can undo it. The
    tables already registered (Arrow streams of pyiceberg scans) stay readable."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _names(available: list[Pair]) -> str:
    return ", ".join(sorted(f"{ns}.{tb}" for ns, tb in available)) or "none yet"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]
