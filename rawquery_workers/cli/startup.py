"""The cyclic garbage collector in a short-lived `rq` process.

Starting a command loads several hundred modules: a few hundred thousand objects that live
until the process ends, and next to no garbage. The collector would traverse them again and
again while they load (~50 ms of the ~0.4 s `rq connections sync --no-wait` takes to
enqueue), then once more as the interpreter tears every module down on exit (~120 ms more
before the shell prompt comes back). Reference counting frees everything else as usual.

Freezing (`gc.freeze`: never traverse these objects again) is only for `rq` running as its
own process: `main([...])` called in a longer-lived process (the tests) must not pin that
process's objects.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator

# Loaded: a command opened files or database connections of its own (pyiceberg's SQL
# catalog, DuckDB) that only the interpreter's teardown closes.
_CLOSED_AT_TEARDOWN = ("pyiceberg", "duckdb")

_own_process = False


def running_as_process() -> None:
    """`main` runs this process's own command line: freezing is allowed from now on."""
    global _own_process
    _own_process = True


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside the block: for a command's start-up (imports, settings,
    a few registry queries), never around its real work."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _own_process:
            # Else the first collection after the pause would traverse all of it (~30 ms).
            gc.freeze()
        if enabled:
            gc.enable()


def prepare_exit() -> None:
    """For a process about to exit: close the registry's database connections (the
    teardown would have, but not those of objects frozen above; SQLite merges its
    write-ahead log on the last close), then spare the interpreter's final collections over
    everything alive now (`gc.freeze`).

    Not frozen after a command that loaded the sink or DuckDB: their connections and files
    are not ours to close, so the normal teardown closes them.
    """
    if not _own_process:
        return
    db = sys.modules.get("rawquery_workers.registry.db")
    if db is not None:
        # Must not replace the command's exit code with a traceback; at exit, a connection
        # that fails to close is closed by the operating system anyway.
        with contextlib.suppress(Exception):
            db.dispose_engines()
    if not any(name in sys.modules for name in _CLOSED_AT_TEARDOWN):
        gc.freeze()
