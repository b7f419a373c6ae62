"""Fault-injection points for the crash, pause and fencing tests. Never set in production.

    RAWQUERY_TEST_CRASH_AT=PHASE:SEGMENT[,...]   the process kills itself (SIGKILL) there
    RAWQUERY_TEST_PAUSE_AT=PHASE:SEGMENT[,...]   the process stops itself (SIGSTOP) there,
                                                 until a SIGCONT (a paused worker or sync)

Each point fires once: the first process to get there creates the marker file
`crashed-PHASE-SEGMENT` (or `paused-...`) under RAWQUERY_HOME, atomically; later arrivals
see it and go on. Crash phases (distributed/coordination.py): `fetch`, `transform`,
`staged`, `before-commit`, `after-commit`. Pause phase (sink/iceberg.py): `commit`, inside
a commit to main after its fencing check and before the catalog takes it; the segment of a
full refresh's final swap is `swap`; `start` (distributed/coordination.py) pauses a sync's
start after its stream number SEGMENT was started.
"""

from __future__ import annotations

import os
import signal

from rawquery_workers.settings import get_settings


def crash_point(phase: str, segment: int | str) -> None:
    """SIGKILL this process at PHASE:SEGMENT when RAWQUERY_TEST_CRASH_AT names it."""
    _fire("RAWQUERY_TEST_CRASH_AT", "crashed", phase, segment, signal.SIGKILL)


def pause_point(phase: str, segment: int | str) -> None:
    """SIGSTOP this process at PHASE:SEGMENT when RAWQUERY_TEST_PAUSE_AT names it."""
    _fire("RAWQUERY_TEST_PAUSE_AT", "paused", phase, segment, signal.SIGSTOP)


def _fire(variable: str, marker: str, phase: str, segment: int | str, sig: int) -> None:
    armed = os.environ.get(variable, "")
    if not armed or f"{phase}:{segment}" not in armed.split(","):
        return
    path = get_settings().home_dir / f"{marker}-{phase}-{segment}"
    try:
        with open(path, "x") as out:  # once per point, whichever process gets there first
            out.write(str(os.getpid()))
    except FileExistsError:
        return
    os.kill(os.getpid(), sig)
