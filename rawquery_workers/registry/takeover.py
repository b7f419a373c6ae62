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
queue. (So a Redis that comes back empty, having lost the queue, leaves those syncs to be
marked lost when their lease runs out; the next sync resumes exactly.)

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
    ) -> None:
        """Record the job just enqueued for the stream (no worker runs it yet); with
        `only_if_new`, only when the stream has no step recorded yet (its first segment)."""
        values = {"epoch": epoch, "job": job, "worker": None, "handed_at": time.time()}
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

    def take_over(self, step: Abandoned) -> dict[str, Any] | None:
        """Claim an abandoned step for a new delivery: its job with the next epoch, or None
        when another reaper (or the step itself) moved it on first."""
        epoch = step.epoch + 1
        job = {**step.job, "epoch": epoch}
        with write_tx(self.engine) as conn:
            done = conn.execute(
                update(stream_steps)
                .where(
                    stream_steps.c.sync_id == step.sync_id,
                    stream_steps.c.stream == step.stream,
                    stream_steps.c.epoch == step.epoch,
                    stream_steps.c.worker == step.worker,
                )
                .values(epoch=epoch, job=job, worker=None, handed_at=time.time())
            )
        return job if done.rowcount else None
