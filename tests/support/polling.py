"""Waiting on another process' state (a worker, a server): nothing notifies us, so poll."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll `condition` until it returns something truthy (returned), or raise TimeoutError
    naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
