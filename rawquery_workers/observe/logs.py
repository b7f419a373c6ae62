"""The log lines of every rawquery process: their level, their format, and the ids of the
work in hand.

    RAWQUERY_LOG_LEVEL   DEBUG, INFO, WARNING (the CLI's default), ERROR or CRITICAL
    RAWQUERY_LOG_FORMAT  text (default) or json: one JSON object a line,
                         {"time", "level", "logger", "message", "connection", "stream",
                          "sync_id", "exception"}, the ids and the traceback when known

Both are read from the environment, not from `Settings`: the CLI configures logging before
any command runs, and loading pydantic for that would slow every `rq` start
(tests/test_cli_startup.py).

The ids come from a context variable that the tasks (distributed) and the embedded runner
set around each piece of work (`log_context`); threads that fetch ahead copy the context
(paginate/ahead.py), so their lines carry the ids too. Nothing here adds a secret to a line:
the ids are names and a uuid, and messages are what the code logs (redacted there).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import IO

from rawquery_workers.errors import ConfigError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
CLI_LEVEL = "WARNING"
# Celery's own line format (worker_log_format), for workers and beat in text format.
CELERY = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"


@dataclass(frozen=True, slots=True)
class LogIds:
    """What the line is about, as far as it is known."""

    connection: str | None = None
    stream: str | None = None
    sync_id: str | None = None


NO_IDS = LogIds()  # frozen: one shared default is safe
_ids: contextvars.ContextVar[LogIds] = contextvars.ContextVar("rawquery_log_ids", default=NO_IDS)


def current_ids() -> LogIds:
    return _ids.get()


@contextlib.contextmanager
def log_context(
    *, connection: str | None = None, stream: str | None = None, sync_id: str | None = None
) -> Iterator[LogIds]:
    """Lines logged inside the block carry these ids (those not given stay as they were)."""
    token = bind(connection=connection, stream=stream, sync_id=sync_id)
    try:
        yield _ids.get()
    finally:
        _ids.reset(token)


def bind(
    *, connection: str | None = None, stream: str | None = None, sync_id: str | None = None
) -> contextvars.Token[LogIds]:
    """`log_context` for code that cannot wrap a block (Celery's prerun and postrun
    signals): pass the token to `unbind` when the work ends."""
    given = {"connection": connection, "stream": stream, "sync_id": sync_id}
    return _ids.set(replace(_ids.get(), **{k: v for k, v in given.items() if v is not None}))


def unbind(token: contextvars.Token[LogIds]) -> None:
    _ids.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback is a field, not more lines)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in asdict(_ids.get()).items() if v is not None})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a line is logged, not when it was created
    (a process that swaps stderr, as test runners do, still sees every line)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def configure(
    level: str | int | None = None,
    fmt: str | None = None,
    *,
    default_level: str | int = CLI_LEVEL,
    text_format: str = logging.BASIC_FORMAT,
) -> None:
    """Send the process's log lines to stderr at the level and in the format asked for.

    `level` and `fmt` default to RAWQUERY_LOG_LEVEL and RAWQUERY_LOG_FORMAT. Like
    `logging.basicConfig`, it leaves alone a process whose logging someone else set up (an
    application embedding rawquery, a test runner); calling it again replaces what an
    earlier call set up.
    """
    chosen_level, chosen_format = _level(level, default_level), _format(fmt)  # checked first
    root = logging.getLogger()
    if any(not isinstance(h, _StderrHandler) for h in root.handlers):
        return
    handler = _StderrHandler()
    if chosen_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(text_format))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(chosen_level)


def _level(level: str | int | None, default: str | int) -> int:
    level = level if level is not None else os.environ.get("RAWQUERY_LOG_LEVEL") or default
    if isinstance(level, int):
        return level
    if level.strip().upper() not in LEVELS:
        raise ConfigError(
            f"RAWQUERY_LOG_LEVEL={level!r} is not a log level; use one of {', '.join(LEVELS)}"
        )
    return logging.getLevelNamesMapping()[level.strip().upper()]


def _format(fmt: str | None) -> str:
    fmt = fmt if fmt is not None else os.environ.get("RAWQUERY_LOG_FORMAT") or "text"
    if fmt.strip().lower() not in FORMATS:
        raise ConfigError(
            f"RAWQUERY_LOG_FORMAT={fmt!r} is not a log format; use {' or '.join(FORMATS)}"
        )
    return fmt.strip().lower()
