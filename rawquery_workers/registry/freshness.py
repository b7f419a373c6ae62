"""When each stream last synced successfully: what the `rawquery_seconds_since_last_success`
gauge is computed from at every scrape (observe/exposition.py).

One grouped query over the stream runs; a stream that never succeeded has no entry. The
history of a deleted connection goes with it (`Registry.delete_connection`), so its streams
drop out too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from rawquery_workers.registry.db import read_tx, stream_runs, syncs
from rawquery_workers.registry.store import Registry


def last_successes(
    registry: Registry, connection: str | None = None
) -> dict[tuple[str, str], datetime]:
    """(connection, stream) -> when its latest successful run finished (aware, UTC); only
    `connection`'s streams when it is given."""
    r, s = stream_runs.c, syncs.c
    query = (
        select(s.connection, r.stream, func.max(r.finished_at))
        .select_from(stream_runs.join(syncs, s.id == r.sync_id))
        .where(r.status == "succeeded", r.finished_at.is_not(None))
        .group_by(s.connection, r.stream)
    )
    if connection is not None:
        query = query.where(s.connection == connection)
    with read_tx(registry.engine) as conn:
        return {(name, stream): at for name, stream, at in conn.execute(query)}
