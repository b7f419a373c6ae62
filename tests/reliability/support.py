"""Helpers of the reliability suite: a fake paginated API with a seeded fault plan, `rq`
run in-process or as a subprocess, and reading a table back as plain rows."""

from __future__ import annotations

import contextlib
import io
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.sink import open_sink
from tests.reliability.tally import TALLY
from tests.support.api_server import RecordedRequest, Reply

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
FAST_RETRY = {"max_retries": 8, "backoff_base": 0.01, "max_wait": 0.05}


# --- running rq -------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def rq(*args: str) -> Result:
    """`rq ARGS` in this process (settings re-read from the environment)."""
    from rawquery_workers.cli.app import main

    reset_settings()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    reset_settings()
    return Result(code, out.getvalue(), err.getvalue())


def rq_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAWQUERY_DEBUG"}
    env.update(extra)
    return env


def rq_popen(args: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(PYTHON).parent / "rq"), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def rq_run(args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> Result:
    proc = rq_popen(args, env, cwd)
    out, err = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def write_json(path: Path, value: Any) -> Path:
    path.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2))
    return path


# --- reading tables ---------------------------------------------------------------------


def table_rows(namespace: str, table: str) -> list[dict[str, Any]]:
    """The table's rows without the `_rq_` columns; [] when it does not exist."""
    reset_settings()
    sink = open_sink(get_settings())
    if (namespace, table) not in set(sink.all_tables()):
        return []
    data = sink.scan_arrow(namespace, table).read_all()
    keep = [c for c in data.column_names if not c.startswith("_rq_")]
    return data.select(keep).to_pylist()


def committed_state(namespace: str, table: str) -> dict[str, str]:
    reset_settings()
    return open_sink(get_settings()).committed_state(namespace, table)


def assert_exact(
    namespace: str, table: str, expected: list[dict[str, Any]], key: str = "id"
) -> None:
    """The table holds exactly `expected`: no duplicate, no missing, no stale row."""
    rows = table_rows(namespace, table)
    keys = [r[key] for r in rows]
    duplicates = len(keys) - len(set(keys))
    by_key = {r[key]: r for r in rows}
    want = {r[key]: r for r in expected}
    missing = [k for k in want if k not in by_key]
    TALLY.rows_lost += len(missing)
    assert duplicates == 0, f"{namespace}.{table}: {duplicates} duplicate rows"
    assert not missing, f"{namespace}.{table}: missing keys {missing[:10]}"
    assert set(by_key) == set(want), f"extra keys {sorted(set(by_key) - set(want))[:10]}"
    for k, record in want.items():
        got = {c: by_key[k].get(c) for c in record}
        assert got == record, f"{namespace}.{table} row {k}: {got} != {record}"


# --- a fake API -------------------------------------------------------------------------


def make_records(n: int, start: int = 1, payload: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        rec: dict[str, Any] = {"id": i, "name": f"user-{i}", "updated_at": 1000 + i}
        if payload:
            rec["blob"] = rng.randbytes(payload // 2).hex()
        out.append(rec)
    return out


@dataclass
class FakeApi:
    """`GET /items?offset=&limit=&since=`: records sorted by id, `updated_at >= since`.

    `faults`: the share of requests that fail (seeded). `on_page(n)` runs when the n-th
    data request arrives (1-based), before it is answered: a test's trigger point."""

    records: list[dict[str, Any]]
    faults: float = 0.0
    seed: int = 0
    slow: float = 0.0  # seconds a "slow" fault waits (above the client's read timeout)
    on_page: Callable[[int], None] | None = None
    served: int = 0
    injected: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def handler(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.served += 1
            number = self.served
            fault = self._pick_fault()
        if self.on_page is not None:
            self.on_page(number)
        if fault is not None:
            self.injected.append(fault)
            TALLY.faults_injected += 1
            return _fault_reply(fault, self.slow)
        params = request.params
        offset = int(params.get("offset", 0))
        limit = int(params.get("limit", 100))
        since = params.get("since")
        rows = [r for r in self.records if since is None or r["updated_at"] >= int(since)]
        return Reply({"data": rows[offset : offset + limit]})

    def _pick_fault(self) -> str | None:
        if self.faults <= 0 or self._rng.random() >= self.faults:
            return None
        kinds = ["500", "502", "503", "429", "reset", "slow", "html", "truncated"]
        if not self.slow:
            kinds.remove("slow")
        return self._rng.choice(kinds)


def _fault_reply(kind: str, slow: float) -> Reply:
    if kind in ("500", "502", "503"):
        return Reply({"error": "boom"}, status=int(kind))
    if kind == "429":
        return Reply({"error": "slow down"}, status=429, headers={"Retry-After": "0"})
    if kind == "reset":
        return Reply(reset=True)
    if kind == "slow":
        return Reply({"data": []}, delay=slow)
    if kind == "html":
        return Reply(
            b"<html><body>maintenance</body></html>", headers={"Content-Type": "text/html"}
        )
    return Reply({"data": [{"id": 1}] * 50}, truncate=20)


def items_spec(
    base_url: str,
    *,
    streams: Sequence[str] = ("items",),
    page_size: int = 10,
    rate_limit: dict[str, Any] | None = None,
    auth: dict[str, Any] | None = None,
    incremental: bool = True,
) -> dict[str, Any]:
    def stream(name: str) -> dict[str, Any]:
        s: dict[str, Any] = {
            "name": name,
            "endpoint": f"/{name}",
            "data_path": "data",
            "primary_key": ["id"],
            "pagination": {
                "type": "offset",
                "param": "offset",
                "limit_param": "limit",
                "page_size": page_size,
            },
        }
        if incremental:
            s["cursor_field"] = "updated_at"
            s["params"] = {"since": "{{cursor}}"}
        return s

    spec: dict[str, Any] = {
        "version": "1",
        "base_url": base_url,
        "auth": auth or {"type": "none"},
        "streams": [stream(n) for n in streams],
        "rate_limit": {**FAST_RETRY, **(rate_limit or {})},
    }
    return spec
