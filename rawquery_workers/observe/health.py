"""Health checks, as /healthz answers them (observe/server.py): each check says whether one
thing this process needs is fine, and why not.

    200 {"status": "ok", "checks": {"redis": {"ok": true, "detail": "..."}}}
    503 {"status": "unhealthy", "checks": {...}}     one check or more failed

A worker checks that Redis answers; beat, that its schedule loop ran recently
(`LoopHeartbeat`). The details name what was checked and the kind of failure, never a URL
with its password or an exception's text (which may quote one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str


Check = Callable[[], CheckResult]


class LoopHeartbeat:
    """A loop's rounds, for a health check: healthy while a round succeeded within
    `stale_after` seconds (or the loop started less than that ago)."""

    def __init__(
        self, what: str, stale_after: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.what = what
        self.stale_after = stale_after
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_ok: float | None = None
        self._last_error: str | None = None

    def ran(self, error: str | None = None) -> None:
        """One round ended: well (no `error`) or not (`error` says why, briefly)."""
        with self._lock:
            if error is None:
                self._last_ok = self._clock()
            self._last_error = error

    def __call__(self) -> CheckResult:
        with self._lock:
            now, last_ok, error = self._clock(), self._last_ok, self._last_error
        if last_ok is None:
            since = now - self._started
            ok = since < self.stale_after
            detail = f"no round of the {self.what} has succeeded yet ({since:.0f} s since start)"
        else:
            since = now - last_ok
            ok = since < self.stale_after
            detail = f"the {self.what} last ran well {since:.1f} s ago"
        if error is not None:
            detail += f"; the latest round failed: {error}"
        return CheckResult(ok, detail)


def run_checks(checks: Mapping[str, Check]) -> tuple[int, dict[str, object]]:
    """The HTTP status and JSON body of /healthz: 200 when every check passes, else 503."""
    results: dict[str, CheckResult] = {}
    for name, check in checks.items():
        try:
            results[name] = check()
        except Exception as exc:  # a broken check is a failed check, not a broken server
            results[name] = CheckResult(False, f"the check itself failed ({type(exc).__name__})")
    ok = all(r.ok for r in results.values())
    body: dict[str, object] = {
        "status": "ok" if ok else "unhealthy",
        "checks": {name: {"ok": r.ok, "detail": r.detail} for name, r in results.items()},
    }
    return (200 if ok else 503), body
