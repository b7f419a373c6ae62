"""`rq beat`: fires scheduled syncs, reading schedules from the registry on every tick.

The registry, not Redis or beat's own state, is the source of truth, so connections added,
updated or deleted while beat runs are honoured without a restart. A slot (one firing time
of one connection) fires once even with several beat processes: the registry records the
last fired slot with a conditional UPDATE that only one of them can win. A slot that comes
while the connection is still syncing is skipped, and the skip is recorded (`status` shows
it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery.beat import Scheduler

from rawquery_workers.distributed.lease import claim
from rawquery_workers.errors import ConflictError, RawqueryError
from rawquery_workers.observe.health import LoopHeartbeat
from rawquery_workers.registry import Registry, open_registry
from rawquery_workers.registry.connections import plan_sync
from rawquery_workers.registry.schedule import parse_schedule

log = logging.getLogger(__name__)
TICK_SECONDS = 5.0
# Beat's /healthz (distributed/observability.py): unhealthy once no round has gone well for
# a dozen ticks (the registry or Redis away that long, or the loop stuck).
SCHEDULE_ROUNDS = LoopHeartbeat("schedule loop", stale_after=12 * TICK_SECONDS)


def due_slot(
    schedule: str, last: datetime | None, created: datetime, now: datetime
) -> datetime | None:
    """The latest firing time in (last or created, now], or None when nothing is due."""
    slot: datetime | None = None
    for when in parse_schedule(schedule).times_after(last or created):
        if when > now:
            break
        slot = when  # missed slots (beat was down) collapse into the latest one
    return slot


def fire_due(
    registry: Registry,
    now: datetime | None = None,
    enqueue: Callable[[str], None] | None = None,
) -> list[str]:
    """Start a sync for every connection whose schedule is due; returns the fired names.

    `now` and `enqueue` (default: hand the sync to the workers) are there for tests."""
    if enqueue is None:  # the Celery app reads the settings when first imported
        from rawquery_workers.distributed.celery_app import enqueue_sync

        enqueue = enqueue_sync
    now = now or datetime.now(UTC)
    fired = []
    for record in registry.list_connections():
        if not record.schedule:
            continue
        slot = due_slot(record.schedule, record.last_scheduled_at, record.created_at, now)
        if slot is None or not registry.mark_scheduled(record.name, slot):
            continue
        sync_id, _ = plan_sync(registry, record.name, trigger="schedule")
        try:
            claim(registry, record.name, sync_id)
        except ConflictError as exc:
            registry.finish_sync(
                sync_id,
                "failed",
                error=f"scheduled sync of {slot:%Y-%m-%d %H:%M} UTC skipped: {exc}",
            )
            log.warning("skipped the scheduled sync of %s: %s", record.name, exc)
            continue
        try:
            enqueue(sync_id)
        except Exception as exc:  # the broker is away: say so where status shows it
            why = f"scheduled sync of {slot:%Y-%m-%d %H:%M} UTC not started: Redis unreachable"
            registry.finish_sync(sync_id, "failed", error=f"{why} ({type(exc).__name__})")
            registry.leases.release(record.name, sync_id)
            log.warning("could not enqueue the scheduled sync of %s: %s", record.name, exc)
            continue
        fired.append(record.name)
    return fired


class RegistryScheduler(Scheduler):
    """A Celery beat scheduler whose only job is `fire_due` every few seconds."""

    def setup_schedule(self) -> None:
        self._registry: Registry | None = None

    @property
    def schedule(self) -> dict[str, Any]:
        return {}

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            self._registry = self._registry or open_registry()
            for name in fire_due(self._registry):
                log.info("fired scheduled sync of %s", name)
        except RawqueryError as exc:
            log.error("scheduling failed: %s", exc)
            SCHEDULE_ROUNDS.ran(error=type(exc).__name__)
        except Exception as exc:  # Redis or the database away: try again next tick
            log.error("scheduling failed (%s: %s); retrying", type(exc).__name__, exc)
            SCHEDULE_ROUNDS.ran(error=type(exc).__name__)
        else:
            SCHEDULE_ROUNDS.ran()
        return TICK_SECONDS
