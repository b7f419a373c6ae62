"""Distributed mode: a stream whose worker died is taken over by another worker.

A stream's sync is a chain of steps, each run by whichever worker takes its message. So
that a dead worker (its main process killed, its node gone, a deploy's grace period cut
short) does not leave its stream waiting for Redis' visibility timeout (an hour), the
registry records for every running stream the job last handed on (`handed_on`) and the
worker running its current step (`started`), and every worker's main process beats
(`beat`). A reaper in every worker (distributed/reaper.py) finds steps whose worker has not
beaten for DEAD_AFTER seconds and takes them over (`take_over`): the epoch grows and the
job is handed on again from the segment it was in, which resumes after the last committed
segment (a commit repeated by the takeover is a no-op). The dead worker's own message,
delivered again later, carries the old epoch and is dropped (`started` says so).

A step queued for a free worker has no worker: it is never taken over, however long the
queue. A Redis that comes back without its data has lost that queue: each step records
the Redis incarnation its message went to (`broker`, distributed/redis_keys.incarnation),
and a step queued under an incarnation that is gone is published again (`lost_queued`,
`publish_again`), its epoch grown as for a takeover, so a copy that survived after all
is dropped. Sync starts are recorded the same way (`published`), and so is the worker
running one (`starting`): a start whose worker died is delivered again (a start delivered
twice starts the streams the first did not).

A paused worker still beats from its main process: its steps are not taken over,
and the lease and the commit fence deal with it instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, or_, select, update

from rawquery_workers.registry.db import (
    read_tx,
    stream_runs,
    stream_steps,
    syncs,
    workers,
    write_tx,
)

BEAT_SECONDS = 5.0
DEAD_AFTER = 30.0  # six missed beats; a takeover then happens within DEAD_AFTER + a reap


@dataclass(frozen=True, slots=True)
class Abandoned:
    """A step whose worker stopped beating: `job` is the job last handed on."""

    sync_id: str
    stream: str
    epoch: int
    worker: str
    job: dict[str, Any]
    broker: str | None = None


class StreamSteps:
    """The step rows of one registry database (`Registry.steps`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def handed_on(
        self,
        sync_id: str,
        stream: str,
        job: dict[str, Any],
        epoch: int,
        *,
        only_if_new: bool = False,
        broker: str | None = None,
    ) -> None:
        """Record the job about to be enqueued for the stream (no worker runs it yet), to
        the Redis incarnation `broker`; with `only_if_new`, only when the stream has no step
        recorded yet (its first segment)."""
        values = {
            "epoch": epoch,
            "job": job,
            "worker": None,
            "handed_at": time.time(),
            "broker": broker,
        }
        with write_tx(self.engine) as conn:
            if only_if_new:
                known = conn.execute(
                    select(stream_steps.c.epoch).where(
                        stream_steps.c.sync_id == sync_id, stream_steps.c.stream == stream
                    )
                ).first()
                if known is None:
                    conn.execute(
                        insert(stream_steps).values(sync_id=sync_id, stream=stream, **values)
                    )
                return
            done = conn.execute(
                update(stream_steps)
                .where(stream_steps.c.sync_id == sync_id, stream_steps.c.stream == stream)
                .values(**values)
            )
            if not done.rowcount:
                conn.execute(insert(stream_steps).values(sync_id=sync_id, stream=stream, **values))

    def started(self, sync_id: str, stream: str, epoch: int, worker: str) -> bool:
        """A step of the stream starts on `worker`; False when `epoch` is not the stream's
        (the stream was taken over since: this is a late delivery, to drop)."""
        with write_tx(self.engine) as conn:
            row = conn.execute(
                select(stream_steps.c.epoch).where(
                    stream_steps.c.sync_id == sync_id, stream_steps.c.stream == stream
                )
            ).first()
            if row is not None and row[0] != epoch:
                return False
            conn.execute(
                update(stream_steps)
                .where(stream_steps.c.sync_id == sync_id, stream_steps.c.stream == stream)
                .values(worker=worker)
            )
            return True

    def started_epoch(self, sync_id: str, stream: str) -> int | None:
        """The stream's current epoch (None: no step recorded)."""
        with read_tx(self.engine) as conn:
            found = conn.execute(
                select(stream_steps.c.epoch).where(
                    stream_steps.c.sync_id == sync_id, stream_steps.c.stream == stream
                )
            ).scalar()
        return int(found) if found is not None else None

    def released(self, sync_id: str, stream: str, epoch: int, worker: str) -> None:
        """A step ended on `worker` and its chain's next step is queued: no worker runs the
        stream until one takes that message, so a queue however long is never taken over."""
        with write_tx(self.engine) as conn:
            conn.execute(
                update(stream_steps)
                .where(
                    stream_steps.c.sync_id == sync_id,
                    stream_steps.c.stream == stream,
                    stream_steps.c.epoch == epoch,
                    stream_steps.c.worker == worker,
                )
                .values(worker=None, handed_at=time.time())
            )

    def finished(self, sync_id: str, stream: str) -> None:
        """The stream's run is final: nothing of it is left to take over."""
        with write_tx(self.engine) as conn:
            conn.execute(
                delete(stream_steps).where(
                    stream_steps.c.sync_id == sync_id, stream_steps.c.stream == stream
                )
            )

    def beat(self, node: str, pid: int) -> None:
        """A worker's main process is alive."""
        with write_tx(self.engine) as conn:
            done = conn.execute(
                update(workers).where(workers.c.node == node).values(pid=pid, beat_at=time.time())
            )
            if not done.rowcount:
                conn.execute(insert(workers).values(node=node, pid=pid, beat_at=time.time()))

    def gone(self, node: str) -> None:
        """A worker shut down cleanly: its steps were finished or handed back."""
        with write_tx(self.engine) as conn:
            conn.execute(delete(workers).where(workers.c.node == node))

    def abandoned(self, dead_after: float = DEAD_AFTER) -> list[Abandoned]:
        """Steps of running streams whose worker has not beaten for `dead_after` seconds."""
        cutoff = time.time() - dead_after
        query = (
            select(stream_steps, workers.c.beat_at)
            .join(syncs, syncs.c.id == stream_steps.c.sync_id)
            .join(
                stream_runs,
                and_(
                    stream_runs.c.sync_id == stream_steps.c.sync_id,
                    stream_runs.c.stream == stream_steps.c.stream,
                ),
            )
            .outerjoin(workers, workers.c.node == stream_steps.c.worker)
            .where(stream_steps.c.worker.is_not(None))
            .where(syncs.c.status == "running", stream_runs.c.status == "running")
            .where(or_(workers.c.beat_at.is_(None), workers.c.beat_at < cutoff))
        )
        with read_tx(self.engine) as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Abandoned(r["sync_id"], r["stream"], r["epoch"], r["worker"], dict(r["job"]))
            for r in rows
        ]

    def lost_queued(self, broker: str) -> list[Abandoned]:
        """Steps of running streams queued (no worker runs them) under a Redis incarnation
        other than `broker`: their messages went with that Redis' data."""
        query = (
            select(stream_steps)
            .join(syncs, syncs.c.id == stream_steps.c.sync_id)
            .join(
                stream_runs,
                and_(
                    stream_runs.c.sync_id == stream_steps.c.sync_id,
                    stream_runs.c.stream == stream_steps.c.stream,
                ),
            )
            .where(stream_steps.c.worker.is_(None))
            .where(stream_steps.c.broker.is_not(None), stream_steps.c.broker != broker)
            .where(syncs.c.status == "running", stream_runs.c.status == "running")
        )
        with read_tx(self.engine) as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Abandoned(r["sync_id"], r["stream"], r["epoch"], "", dict(r["job"]), r["broker"])
            for r in rows
        ]

    def publish_again(self, step: Abandoned, broker: str) -> dict[str, Any] | None:
        """Claim a lost queued step for publishing to incarnation `broker`: its job with
        the next epoch, or None when another reaper (or a worker) moved it on first."""
        still = (stream_steps.c.worker.is_(None), stream_steps.c.broker == step.broker)
        return self._next_epoch(step, still, broker)

    def lost_starts(self, broker: str) -> list[str]:
        """Queued syncs whose start was published to another Redis incarnation."""
        query = select(syncs.c.id).where(
            syncs.c.status == "queued", syncs.c.broker.is_not(None), syncs.c.broker != broker
        )
        with read_tx(self.engine) as conn:
            return [row[0] for row in conn.execute(query)]

    def start_again(self, sync_id: str, lost: str | None, broker: str) -> bool:
        """Claim a lost start for publishing to `broker` (once among the reapers)."""
        with write_tx(self.engine) as conn:
            done = conn.execute(
                update(syncs)
                .where(syncs.c.id == sync_id, syncs.c.status == "queued")
                .where(syncs.c.broker == lost if lost is not None else syncs.c.broker.is_(None))
                .values(broker=broker)
            )
        return bool(done.rowcount)

    def published(self, sync_id: str, broker: str) -> None:
        """The start of `sync_id` is about to be published to incarnation `broker`."""
        with write_tx(self.engine) as conn:
            conn.execute(update(syncs).where(syncs.c.id == sync_id).values(broker=broker))

    def starting(self, sync_id: str, worker: str | None) -> None:
        """`worker` runs the start of `sync_id` (None: its start is done)."""
        with write_tx(self.engine) as conn:
            conn.execute(update(syncs).where(syncs.c.id == sync_id).values(starter=worker))

    def abandoned_starts(self, dead_after: float = DEAD_AFTER) -> list[tuple[str, str]]:
        """(sync id, worker) of running syncs whose start's worker stopped beating."""
        cutoff = time.time() - dead_after
        query = (
            select(syncs.c.id, syncs.c.starter)
            .outerjoin(workers, workers.c.node == syncs.c.starter)
            .where(syncs.c.status.in_(("queued", "running")), syncs.c.starter.is_not(None))
            .where(or_(workers.c.beat_at.is_(None), workers.c.beat_at < cutoff))
        )
        with read_tx(self.engine) as conn:
            return [(row[0], row[1]) for row in conn.execute(query)]

    def take_over_start(self, sync_id: str, worker: str) -> bool:
        """Claim a dead worker's start of `sync_id` for a new delivery (one reaper wins)."""
        with write_tx(self.engine) as conn:
            done = conn.execute(
                update(syncs)
                .where(syncs.c.id == sync_id, syncs.c.starter == worker)
                .values(starter=None)
            )
        return bool(done.rowcount)

    def broker_of(self, sync_id: str) -> str | None:
        with read_tx(self.engine) as conn:
            found = conn.execute(select(syncs.c.broker).where(syncs.c.id == sync_id)).scalar()
        return str(found) if found is not None else None

    def take_over(self, step: Abandoned, broker: str | None = None) -> dict[str, Any] | None:
        """Claim an abandoned step for a new delivery (to incarnation `broker`): its job with
        the next epoch, or None when another reaper (or the step itself) moved it on first."""
        return self._next_epoch(step, (stream_steps.c.worker == step.worker,), broker)

    def _next_epoch(
        self, step: Abandoned, still: tuple[Any, ...], broker: str | None
    ) -> dict[str, Any] | None:
        """Move the step to the next epoch, queued to `broker`, if it is still at its epoch
        and as `still` says (one reaper wins); the job to publish, or None."""
        epoch = step.epoch + 1
        job = {**step.job, "epoch": epoch}
        with write_tx(self.engine) as conn:
            done = conn.execute(
                update(stream_steps)
                .where(
                    stream_steps.c.sync_id == step.sync_id,
                    stream_steps.c.stream == step.stream,
                    stream_steps.c.epoch == step.epoch,
                    *still,
                )
                .values(epoch=epoch, job=job, worker=None, handed_at=time.time(), broker=broker)
            )
        return job if done.rowcount else None
