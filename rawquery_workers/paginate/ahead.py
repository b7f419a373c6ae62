"""Requests sent ahead of the page being read: a connection's `concurrency` at work.

    ahead = Ahead(limit)                       # up to `limit` calls running at once
    ahead.plan([(key, call), ...])             # these should be running now, in this order
    result = ahead.take(key, call)             # its result (waited for, or called here)
    ahead.close()                              # calls still running are forgotten

The reader asks for results strictly in page order, so records, resume states and the
loop guards see the pages exactly as a one-at-a-time walk would. A planned call that is
no longer wanted (a page beyond the end, or an offset guessed wrong) is dropped: its
result, or its error, is never read, and its records are never counted.

Threads, not asyncio: every request goes through the synchronous `ApiClient` (retries,
auth flows, the rate limiter), which is thread-safe; the connection's `in_flight`
semaphore bounds the requests actually on the wire across all its streams.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")


class Ahead(Generic[T]):
    """Calls run in up to `limit` threads, their results taken by key (see the module)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pool = ThreadPoolExecutor(limit, thread_name_prefix="rq-fetch") if limit > 1 else None
        self._running: dict[Hashable, Future[T]] = {}

    def plan(self, calls: list[tuple[Hashable, Callable[[], T]]]) -> None:
        """Have the first `limit` of `calls` running: start those that are not; forget
        the running ones that are not among them."""
        if self._pool is None:
            return
        calls = calls[: self.limit]
        wanted = {key for key, _ in calls}
        for key in [k for k in self._running if k not in wanted]:
            self._running.pop(key).cancel()
        for key, call in calls:
            if key not in self._running:
                # the caller's context (log fields) goes with the call into its thread
                context = contextvars.copy_context()
                self._running[key] = self._pool.submit(context.run, call)

    def take(self, key: Hashable, call: Callable[[], T]) -> T:
        """The result of the call planned under `key`, or of `call` made now when none was;
        an error the call raised is raised here."""
        running = self._running.pop(key, None)
        return call() if running is None else running.result()

    def close(self) -> None:
        """Forget every call still planned: none is waited for, no result is read."""
        for future in self._running.values():
            future.cancel()
        self._running.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
