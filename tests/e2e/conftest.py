"""Fixtures of the end-to-end tests: `cli` runs `rq` in this process, `write_spec` writes a
spec file. Every test uses `rq_home` (a private RAWQUERY_HOME, embedded mode, no Redis)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from rawquery_workers.cli.app import main
from rawquery_workers.settings import reset_settings
from tests.e2e.helpers import Cli, Result


@pytest.fixture
def cli(rq_home: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`cli("connections", "list", "--json")` runs `rq` in this process; never raises."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        reset_settings()
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        else:  # pragma: no cover - main always exits
            code = 0
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """`write_spec(spec_dict, name="spec.json")` -> path of the JSON file."""

    def write(spec: dict[str, Any], name: str = "spec.json") -> Path:
        path = tmp_path / name
        path.write_bytes(orjson.dumps(spec))
        return path

    return write
