"""Files only their owner may read: the embedded SQLite catalog and registry.

The registry database holds the encrypted credentials, the specs and the sync history, so
`catalog.db` is created 0600 like `secret.key` (whatever the umask), and an existing one
that group or others can read is tightened. SQLite gives its `-wal`, `-shm` and `-journal`
files the database file's mode; existing ones are tightened too.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_sqlite_file(database: str | None) -> None:
    """Create the SQLite file `database` 0600 if it does not exist; tighten it (and its side
    files) if it does. In-memory and `file:` URI databases are left alone."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for each in (path, *(path.with_name(path.name + side) for side in _SIDE_FILES)):
        _tighten(each)


def _tighten(path: Path) -> None:
    """Clear the group and other bits of a file this user owns (best effort: a file owned by
    another user, or on a file system without modes, stays as it is)."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISREG(mode) and mode & 0o077:
            os.chmod(path, stat.S_IMODE(mode) & 0o700)
    except OSError:
        pass
