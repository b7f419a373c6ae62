"""`rq --version` and shell completion."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from rawquery_workers.cli.app import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"rawquery-workers {version('rawquery-workers')}\n"


def test_usage_error_is_a_message_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["spec", "preview", "spec.json", "--pages", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--pages'" in err and "internal error" not in err


def _rq() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "rq")
    if not os.path.exists(path):
        pytest.skip("the rq script is not installed")
    return path


def test_show_completion_prints_a_bash_script() -> None:
    """Typer detects the shell it runs under: here bash."""
    out = subprocess.run(
        ["bash", "-c", f"{_rq()} --show-completion"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "_rq_completion" in out and "_RQ_COMPLETE=complete_bash" in out


def test_completion_completes_commands() -> None:
    env = {
        **os.environ,
        "_RQ_COMPLETE": "complete_bash",
        "COMP_WORDS": "rq spec pre",
        "COMP_CWORD": "2",
    }
    out = subprocess.run([_rq()], check=True, capture_output=True, text=True, env=env).stdout
    assert out.split() == ["preview"]
