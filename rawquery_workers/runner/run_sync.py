"""`python -m rawquery_workers.runner.run_sync SYNC_ID`: the detached process behind `--no-wait`
in embedded mode."""

from __future__ import annotations

import sys

from rawquery_workers.errors import RawqueryError
from rawquery_workers.runner.sync import run_sync


def main(argv: list[str]) -> int:
    try:
        outcome = run_sync(argv[0])
    except RawqueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
