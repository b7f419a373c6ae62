"""What every `rq` start pays for, and the garbage collector of a short-lived `rq` process."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from rawquery_workers.cli import startup

# Loaded by the commands that use them, when they run: none is needed to parse a command line
# or print help, and together they cost ~0.3 s of start-up.
COMMAND_DEPENDENCIES = (
    "sqlalchemy",
    "pydantic",
    "pydantic_settings",
    "celery",
    "redis",
    "cryptography",
    "rich",
    "click",
    "rawquery_workers.registry",
    "rawquery_workers.settings",
    "rawquery_workers.spec.models",
    "rawquery_workers.registry.connections",
    "rawquery_workers.cli.display",
)


def _run(code: str, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_loading_the_cli_loads_no_command_dependency() -> None:
    code = (
        "import sys\nimport rawquery_workers.cli.app\n"
        f"print([n for n in {COMMAND_DEPENDENCIES!r} if n in sys.modules])"
    )
    assert _run(code) == ["[]"]


def test_gc_paused_in_process_pauses_and_restores_without_freezing() -> None:
    frozen = gc.get_freeze_count()
    assert gc.isenabled()
    with startup.gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


def test_gc_paused_keeps_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with startup.gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_as_its_own_process_what_start_up_loaded_is_never_traversed_again() -> None:
    code = """
import gc
from rawquery_workers.cli import startup
startup.running_as_process()
with startup.gc_paused():
    import rawquery_workers.registry
print(gc.isenabled(), gc.get_freeze_count() > 0, gc.get_count()[0] < 1000)
"""
    assert _run(code) == ["True True True"]


def test_a_process_exit_after_the_sink_loaded_leaves_teardown_alone() -> None:
    code = """
import gc, sys, types
from rawquery_workers.cli import startup
startup.running_as_process()
sys.modules["pyiceberg"] = types.ModuleType("pyiceberg")  # as if the sink had been used
startup.prepare_exit()
print(gc.get_freeze_count())
"""
    assert _run(code) == ["0"]


def test_a_process_closes_the_registry_database_before_it_exits(rq_home: Path) -> None:
    """Frozen objects are never collected, so `prepare_exit` closes the registry's
    connections itself: SQLite then merges its write-ahead log, as at any last close."""
    out = _run("from rawquery_workers.cli.app import main; main()", "connections", "list")

    assert out == ["no connections yet; add one with `rq connect NAME --spec FILE`"]
    assert (rq_home / "catalog.db").exists()
    assert not (rq_home / "catalog.db-wal").exists()
