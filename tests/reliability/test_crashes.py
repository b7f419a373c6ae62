"""Item 2 (embedded): `rq connections sync` SIGKILLed mid-sync; the next sync ends exact.

Kill points are conditions, not sleeps: the API server kills the process when page K is
requested (during a fetch; page 2k+1 is requested right after segment k committed), or a
watcher kills it the moment the n-th Parquet file is staged or the n-th table metadata
file (a commit) appears. Segments are 10 records (pages of 5), so a sync has many.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.support import (
    FakeApi,
    assert_exact,
    committed_state,
    items_spec,
    make_records,
    rq,
    rq_env,
    rq_popen,
    table_rows,
    write_json,
)
from tests.reliability.tally import TALLY
from tests.support.api_server import ApiServer

pytestmark = pytest.mark.reliability

# (kind, n, synced before): page = kill when the API sees request n; staged = when the n-th
# data file is written; commit = when the n-th metadata file appears. `synced before`: a
# complete sync ran first, so the killed one is an incremental sync with a saved cursor.
KILL_POINTS = [
    ("page", 1, False),
    ("page", 2, False),
    ("page", 3, False),  # right after segment 0 committed
    ("page", 6, False),
    ("page", 9, False),  # right after segment 3 committed
    ("staged", 1, False),
    ("staged", 4, False),
    ("commit", 3, False),
    ("commit", 6, False),
    ("page", 4, True),
    ("staged", 2, True),
    ("commit", 2, True),
]


def _watch(root: Path, pattern: str, n: int, kill: Callable[[], None]) -> threading.Thread:
    """Kill as soon as `n` files matching `pattern` have appeared under `root` (counting
    each name once seen: old metadata files are deleted as new ones come)."""
    stop = threading.Event()
    seen = {p.name for p in root.rglob(pattern)} if root.exists() else set()
    start = len(seen)

    def run() -> None:
        while not stop.is_set():
            if root.exists():
                seen.update(p.name for p in root.rglob(pattern))
                if len(seen) - start >= n:
                    kill()
                    return
            stop.wait(0.002)

    thread = threading.Thread(target=run, daemon=True)
    thread.stop = stop  # type: ignore[attr-defined]
    thread.start()
    return thread


def _cursor_not_ahead(name: str, records: list[dict]) -> None:
    """Every record at or before the saved cursor is in the table (else it is skipped)."""
    state = committed_state(name, "items")
    cursor = state.get("rq.cursor") or ""
    if not cursor:
        return
    present = {r["id"] for r in table_rows(name, "items")}
    behind = [r["id"] for r in records if r["updated_at"] <= int(cursor)]
    missing = [i for i in behind if i not in present]
    assert not missing, f"cursor {cursor} is ahead of the data: ids {missing[:10]} missing"


@pytest.mark.parametrize(("kind", "n", "synced_before"), KILL_POINTS)
def test_sigkill_then_next_sync_exact(
    kind: str,
    n: int,
    synced_before: bool,
    rq_home: Path,
    api_server: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = make_records(60)
    api = FakeApi(records)
    api_server.route("/items", api.handler)
    name = f"crash_{kind}_{n}"
    write_json(rq_home.parent / "spec.json", items_spec(api_server.url, page_size=5))
    assert rq("connect", name, "--spec", "spec.json").code == 0
    monkeypatch.setenv("RAWQUERY_SEGMENT_RECORDS", "10")
    if synced_before:
        assert rq("connections", "sync", name).code == 0
        for rec in records[::3]:
            rec["name"] += "-v2"
            rec["updated_at"] += 10_000
        records += make_records(25, start=61)
        api.records = sorted(records, key=lambda r: r["updated_at"])
        records = api.records

    killed = threading.Event()
    holder: dict[str, int] = {}

    def kill() -> None:
        if not killed.is_set() and "pid" in holder:
            killed.set()
            os.kill(holder["pid"], signal.SIGKILL)

    base = api.served
    api.on_page = (lambda k: kill() if k - base >= n else None) if kind == "page" else None
    proc = rq_popen(["connections", "sync", name], rq_env(), rq_home.parent)
    holder["pid"] = proc.pid
    watcher = None
    if kind != "page":
        table_dir = rq_home / "warehouse" / name / "items"
        pattern = "*.parquet" if kind == "staged" else "*.metadata.json"
        watcher = _watch(table_dir, pattern, n, kill)
    proc.communicate(timeout=120)
    if watcher is not None:
        watcher.stop.set()  # type: ignore[attr-defined]
    api.on_page = None
    assert killed.is_set() and proc.returncode == -signal.SIGKILL, "the sync was not killed"
    TALLY.crashes_survived += 1

    _cursor_not_ahead(name, records)
    after = rq("connections", "sync", name)
    assert after.code == 0, after.text
    assert_exact(name, "items", records)
    _cursor_not_ahead(name, records)
    assert committed_state(name, "items").get("rq.cursor") == str(
        max(r["updated_at"] for r in records)
    )
