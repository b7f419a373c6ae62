"""The reliability suite: faults, crashes, bad input and hostile data (issue 7).

Every test here is marked `reliability` (run the suite alone with `-m reliability`). The
session tally is printed at the end; set RQ_RECORD_TALLY=1 to also write it into
docs/reliability.md (between the tally markers).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# `dist` and `rq_workers`: fixtures of the distributed tests (private Redis, `rq worker`s).
from tests.distributed.conftest import dist  # noqa: F401
from tests.reliability.dist_support import rq_workers  # noqa: F401
from tests.reliability.tally import TALLY

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BEGIN, END = "<!-- tally:begin -->", "<!-- tally:end -->"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ran = terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
    if not any("tests/reliability" in getattr(r, "nodeid", "") for r in ran):
        return
    terminalreporter.section("reliability tally")
    for line in TALLY.lines():
        terminalreporter.write_line(line)
    if os.environ.get("RQ_RECORD_TALLY") and DOC.exists():
        block = "\n".join([BEGIN, "```", *TALLY.lines(), "```", END])
        text = DOC.read_text()
        pattern = re.escape(BEGIN) + ".*?" + re.escape(END)
        DOC.write_text(re.sub(pattern, lambda _: block, text, flags=re.S))
