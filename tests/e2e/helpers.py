"""End-to-end helpers: results of `rq` runs, a real `rq` process, table reads, byte greps."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.sink import open_sink

RQ = Path(sys.executable).parent / "rq"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return orjson.loads(self.out)


Cli = Callable[..., Result]


def run_rq(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """`rq` as a real process (the console script of this venv)."""
    proc = subprocess.run(
        [str(RQ), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def rows(connection: str, table: str, order_by: str | None = "id") -> list[dict[str, Any]]:
    """A table's rows (user columns only, no `_rq_*`), sorted by `order_by`."""
    clean = [
        {k: v for k, v in r.items() if not k.startswith("_rq_")}
        for r in all_rows(connection, table)
    ]
    return sorted(clean, key=lambda r: r[order_by]) if order_by else clean


def all_rows(connection: str, table: str) -> list[dict[str, Any]]:
    """A table's rows including the `_rq_*` columns, unsorted."""
    reset_settings()
    return open_sink(get_settings()).scan_arrow(connection, table).read_all().to_pylist()


def files_containing(root: Path, needles: list[str]) -> list[tuple[Path, str]]:
    """Every (file, needle) where a needle's bytes occur in a file under `root`."""
    hits: list[tuple[Path, str]] = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits += [(path, n) for n in needles if n.encode() in data]
    return hits


def status_streams(cli: Cli, name: str) -> dict[str, dict[str, Any]]:
    result = cli("connections", "status", name, "--json")
    assert result.code == 0, result.err
    return {s["name"]: s for s in result.json()["streams"]}
