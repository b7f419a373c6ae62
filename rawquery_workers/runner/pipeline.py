"""The four steps of a stream sync, as plain functions (no Celery in here).

    refresh_auth -> fetch_segment -> stage_segment -> commit_segment   (repeat per segment)

A segment is a bounded number of records. Its data is staged as Parquet under the table's
location (shared storage), so in distributed mode any worker can run the next step; the
Celery tasks in `tasks.py` are thin wrappers that pass `StreamJob` / `StagedSegment`
values (ids and file references only, never records or credentials).

State lives in the Iceberg snapshot that carries the data (`rq.*` summary properties):
    rq.complete        "true" when the sync that wrote it finished the stream
    rq.cursor          the saved incremental cursor (moves only when a sync completes)
    rq.since           the cursor an unfinished sync filters with
    rq.pending_cursor  the greatest cursor an unfinished sync has committed so far
    rq.resume          the paginator state where an unfinished sync continues
A sync that dies mid-stream leaves its last committed segment's state; the next sync of
the stream resumes there with the same `since`, so nothing is skipped or doubled.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from rawquery_workers.errors import SourceError
from rawquery_workers.http.client import OutOfTime
from rawquery_workers.paginate.extract import (
    Page,
    child_data_path,
    read_pages,
    records_json,
    records_of,
)
from rawquery_workers.runner.context import StreamContext
from rawquery_workers.runner.segment import (
    CHUNK_RECORDS,
    CHUNK_SECONDS,
    MIN_CHUNK_RECORDS,
    SegmentWriter,
    WrittenTable,
    relaxed_gc,
)
from rawquery_workers.transform.batch import KEY
from rawquery_workers.transform.columnar import PageBodies
from rawquery_workers.transform.cursor import bounded, later_cursor, looked_back
from rawquery_workers.transform.landed import LandedRecords

if TYPE_CHECKING:
    from rawquery_workers.sink.maintenance import TableReport


@dataclass(frozen=True, slots=True)
class StreamJob:
    """Where one stream's sync stands: small and JSON-able (it travels in Celery messages)."""

    connection: str
    sync_id: str
    stream: str
    full_refresh: bool = False
    segment: int = 0
    resume: dict[str, Any] | None = None
    since: str | None = None
    pending_cursor: str | None = None
    rows: int = 0
    pages: int = 0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    cursor: str | None = None  # the saved cursor when the sync started (`since` looks back)
    walk_started: datetime | None = None  # a resumed walk: when its first sync started
    # table -> its head sequence number when the sync started: commits are fenced by it
    fences: dict[str, int] = field(default_factory=dict)
    epoch: int = 0  # distributed: grows with each takeover of the stream (registry/takeover)

    @property
    def walk_start(self) -> datetime:
        return self.walk_started or self.started_at

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["walk_started"] = self.walk_started.isoformat() if self.walk_started else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamJob:
        started = datetime.fromisoformat(data["started_at"])
        walk = data.get("walk_started")
        walk_started = datetime.fromisoformat(walk) if walk else None
        return cls(**{**data, "started_at": started, "walk_started": walk_started})


@dataclass(frozen=True, slots=True)
class FetchedSegment:
    """A fetched segment: its pages are staged in `pages_file` (`Staging.write_pages`)."""

    job: StreamJob
    pages_file: str
    records: int
    pages: int
    next_state: dict[str, Any] | None  # None: this segment ends the stream
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StagedTable:
    name: str
    files: list[str]
    rows: int
    keys: list[str] = field(default_factory=list)
    parent_key: str | None = None
    parent: str | None = None
    parent_keys_file: str | None = None


@dataclass(frozen=True, slots=True)
class StagedSegment:
    """A segment written as Parquet, ready to commit: JSON-able references only."""

    job: StreamJob
    tables: list[StagedTable]
    pages: int
    next_state: dict[str, Any] | None
    max_cursor: str | None
    warnings: list[str]
    schema_changes: list[str]

    @property
    def done(self) -> bool:
        return self.next_state is None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["job"] = self.job.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StagedSegment:
        data = dict(data)
        data["job"] = StreamJob.from_dict(data["job"])
        data["tables"] = [StagedTable(**t) for t in data["tables"]]
        return cls(**data)


# --- step 0: where a stream starts ---------------------------------------------------------


def start_job(ctx: StreamContext, sync_id: str, full_refresh: bool) -> StreamJob:
    """The first job of a stream sync, resuming an unfinished earlier sync if there is one."""
    stream = ctx.stream
    tables = [stream.name, *map(stream.child_table, stream.expand)]
    fences = {name: ctx.sink.head_sequence(ctx.connection, name) for name in tables}
    base = StreamJob(ctx.connection, sync_id, stream.name, full_refresh, fences=fences)
    if full_refresh or stream.full_refresh_only:
        return dataclasses.replace(base, full_refresh=True)
    state = ctx.sink.committed_state(ctx.connection, stream.name)
    saved = (state.get("rq.cursor") or None) if stream.incremental else None
    if state.get("rq.complete") == "false" and state.get("rq.resume"):
        walk = state.get("rq.walk_started")
        return dataclasses.replace(
            base,
            resume=orjson.loads(state["rq.resume"]),
            since=state.get("rq.since") or None,
            cursor=saved,
            pending_cursor=state.get("rq.pending_cursor") or None,
            walk_started=datetime.fromisoformat(walk) if walk else None,
        )
    return dataclasses.replace(base, since=looked_back(saved, stream.cursor_lookback), cursor=saved)


# --- step 1: refresh-auth ------------------------------------------------------------------


def refresh_auth(ctx: StreamContext) -> None:
    """Refresh OAuth2 tokens (persisting rotated ones) before fetching; a no-op otherwise."""
    refresh = getattr(ctx.auth, "refresh", None)
    if callable(refresh):
        refresh()


def ensure_auth(ctx: StreamContext) -> None:
    """Before each segment in distributed mode: refresh an access token that is missing or
    about to expire (under the single-flight lock, so a token another worker just rotated is
    picked up instead of refreshed again)."""
    ensure_fresh = getattr(ctx.auth, "ensure_fresh", None)
    if callable(ensure_fresh):
        ensure_fresh()


# --- step 2: fetch-pages -------------------------------------------------------------------


def fetch_segment(
    ctx: StreamContext, job: StreamJob, pages: Iterator[Page] | None = None
) -> FetchedSegment:
    """Read pages from `job.resume` until the segment holds `segment_records` records (or
    has fetched for `segment_seconds`), writing each page's records (a JSON array) to the
    staging area as they arrive (memory holds one page, not the segment). `pages` lets an
    in-process caller keep one page iterator across segments."""
    pages = pages if pages is not None else iter_pages(ctx, job)
    count = read = 0
    next_state: dict[str, Any] | None = None
    warnings: list[str] = []
    full = _segment_full(ctx)

    def bodies() -> Iterator[tuple[bytes, int]]:
        nonlocal count, read, next_state
        for page in full.within(ctx, pages):
            if page.records:  # the records alone: the rest of a body may hold tokens
                yield records_json(page.records), len(page.records)
            count, read, next_state = count + 1, read + len(page.records), page.next_state
            warnings.extend([page.warning] if page.warning else [])
            _page_event(ctx, job, count, page)
            if next_state is None or full(read):
                return

    path = ctx.staging.write_pages(job.sync_id, f"{job.stream}-{job.segment}", bodies())
    return FetchedSegment(job, path, read, count, next_state, warnings)


def fetch_and_stage(
    ctx: StreamContext, job: StreamJob, pages: Iterator[Page] | None = None
) -> StagedSegment:
    """`stage_segment(ctx, fetch_segment(ctx, job, pages))` in one pass: records are shaped
    and written a chunk at a time as their pages arrive (rawquery_workers/runner/segment.py), so
    memory holds the page bodies of a chunk or two, not the whole segment."""
    pages = pages if pages is not None else iter_pages(ctx, job)
    chunk = PageBodies([], [], child_data_path(ctx.stream))
    in_chunk = count = 0
    next_state: dict[str, Any] | None = None
    full = _segment_full(ctx)
    chunk_started = time.monotonic()
    with relaxed_gc(), _segment_writer(ctx, job) as segment:
        for page in full.within(ctx, pages):
            if page.records:  # the page's records are freed: the chunk keeps its body
                chunk.bodies.append(page.body)
                chunk.counts.append(len(page.records))
                in_chunk += len(page.records)
            count += 1
            next_state = page.next_state
            segment.warnings += [page.warning] if page.warning else []
            _page_event(ctx, job, count, page)
            done = next_state is None or full(segment.records + in_chunk)
            if in_chunk and (done or _chunk_full(in_chunk, chunk_started)):
                _add_pages(segment, chunk)
                chunk, in_chunk = PageBodies([], [], child_data_path(ctx.stream)), 0
                chunk_started = time.monotonic()
            if done:
                break
        if in_chunk:  # the segment's time ran out in a request (`within`)
            _add_pages(segment, chunk)
        return _staged(ctx, job, segment, count, next_state)


def _chunk_full(records: int, started: float) -> bool:
    """Whether a chunk goes to the writer: CHUNK_RECORDS records, or CHUNK_SECONDS of pages
    once it holds MIN_CHUNK_RECORDS. An API that answers slowly gives small chunks, shaped
    and written while later pages are on their way, so little is left when the last
    arrives; a fast one gives full chunks, the cheapest to shape."""
    if records >= CHUNK_RECORDS:
        return True
    return records >= MIN_CHUNK_RECORDS and time.monotonic() - started >= CHUNK_SECONDS


def _segment_full(ctx: StreamContext) -> _SegmentClock:
    """Whether a segment that has read `records` so far is done: `segment_records`
    records, or `segment_seconds` since this call."""
    settings = ctx.settings
    return _SegmentClock(settings.segment_records, time.monotonic() + settings.segment_seconds)


@dataclass(frozen=True, slots=True)
class _SegmentClock:
    """A segment's limits: `records`, and `deadline` (a time.monotonic() instant)."""

    records: int
    deadline: float

    def __call__(self, records: int) -> bool:
        return records >= self.records or time.monotonic() >= self.deadline

    def within(self, ctx: StreamContext, pages: Iterator[Page]) -> Iterator[Page]:
        """`pages`, their requests ending at the deadline once the segment holds a page
        (the first one is awaited, so every segment makes progress): then the segment
        ends before that page, and the next one asks for it again (`_Pages`)."""
        ctx.api.finish_by = None
        try:
            for page in pages:
                yield page
                ctx.api.finish_by = self.deadline
        except OutOfTime:
            return
        finally:
            ctx.api.finish_by = None


def _page_event(ctx: StreamContext, job: StreamJob, count: int, page: Page) -> None:
    if ctx.on_progress:
        ctx.on_progress(
            {
                "stream": job.stream,
                "event": "page",
                "page": job.pages + count,
                "records": len(page.records),
                "url": page.url,
            }
        )


def iter_pages(ctx: StreamContext, job: StreamJob) -> Iterator[Page]:
    return _Pages(ctx, job)


class _Pages(Iterator[Page]):
    """The stream's pages over several segments. A request the segment's deadline cut
    (OutOfTime) ends the read in progress: the next page starts a new read from the last
    page's resume point, so no page is skipped."""

    def __init__(self, ctx: StreamContext, job: StreamJob) -> None:
        self._ctx, self._since, self._resume = ctx, job.since, job.resume
        self._parents = parent_rows(ctx, job) if ctx.stream.parent is not None else None
        self._read = self._start()

    def _start(self) -> Iterator[Page]:
        ctx = self._ctx
        return read_pages(
            ctx.spec,
            ctx.stream,
            ctx.api,
            cursor=self._since,
            resume=self._resume,
            parents=self._parents,
        )

    def __next__(self) -> Page:
        try:
            page = next(self._read)
        except OutOfTime:
            self._read = self._start()
            raise
        self._resume = page.next_state
        return page


def parent_rows(ctx: StreamContext, job: StreamJob) -> list[dict[str, Any]]:
    """The rows of a child stream's parent table, as the parent's sync left it: the columns
    the child uses, JSON-able, each distinct combination once."""
    assert ctx.stream.parent is not None
    parent, columns = ctx.stream.parent.stream, ctx.stream.parent_columns
    known = ctx.sink.known_schema(job.connection, parent)
    if known is None:
        raise SourceError(
            f"stream {ctx.stream.name}: its parent table {job.connection}.{parent} does not "
            f"exist yet; sync the stream '{parent}' first (a sync of this stream includes it)"
        )
    missing = [c for c in columns if c not in known.schema.names]
    have = [n for n in known.schema.names if not n.startswith("_rq_")]
    if missing:
        raise SourceError(
            f"stream {ctx.stream.name}: its parent table {job.connection}.{parent} has no "
            f"column {', '.join(map(repr, missing))} (parent.fields and {{{{parent.*}}}} name "
            f"the parent's columns: {', '.join(have)})"
        )
    rows: dict[bytes, dict[str, Any]] = {}
    for batch in ctx.sink.scan_arrow(job.connection, parent, columns):
        for row in batch.to_pylist():
            values = {k: _json_value(v) for k, v in row.items()}
            rows.setdefault(orjson.dumps(values, option=orjson.OPT_SORT_KEYS), values)
    return list(rows.values())


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


# --- step 3: transform (and stage as Parquet) ----------------------------------------------


def stage_segment(ctx: StreamContext, fetched: FetchedSegment) -> StagedSegment:
    """Shape the staged pages' records into tables a chunk at a time, evolve the tables'
    schemas and write Parquet files."""
    with relaxed_gc(), _segment_writer(ctx, fetched.job) as segment:
        for chunk in ctx.staging.read_pages(fetched.pages_file, CHUNK_RECORDS):
            _add_pages(segment, chunk)
        segment.warnings += fetched.warnings
        return _staged(ctx, fetched.job, segment, fetched.pages, fetched.next_state)


def _add_pages(segment: SegmentWriter, chunk: PageBodies) -> None:
    """Hand a chunk to the segment as its page bodies: Arrow reads them; their records are
    parsed again (orjson) only where it cannot (docs/decisions/007)."""
    bodies, data_path = chunk.bodies, chunk.data_path
    segment.add(lambda: records_of(bodies, data_path), chunk)


def _segment_writer(ctx: StreamContext, job: StreamJob) -> SegmentWriter:
    return SegmentWriter(
        ctx.stream,
        ctx.sink,
        job.connection,
        since=job.since,
        max_cursor=job.pending_cursor,
        sync_id=job.sync_id,
        segment=job.segment,
        synced_at=job.started_at,
        landed=_landed(ctx, job),
    )


def _landed(ctx: StreamContext, job: StreamJob) -> LandedRecords | None:
    """What an append stream landed at or after `since`, so it is not landed again."""
    stream, column = ctx.stream, ctx.stream.cursor_column
    if stream.primary_key or column is None or job.since is None or job.full_refresh:
        return None
    rows = ctx.sink.rows_at_or_after(job.connection, stream.name, column, job.since, job.started_at)
    return None if rows is None else LandedRecords(rows, column)


def _staged(
    ctx: StreamContext,
    job: StreamJob,
    segment: SegmentWriter,
    pages: int,
    next_state: dict[str, Any] | None,
) -> StagedSegment:
    """Close the segment's files; what the commit step needs, as references."""
    tables = [_stage_table(ctx, job, table) for table in segment.finish()]
    return StagedSegment(
        job=job,
        tables=tables,
        pages=pages,
        next_state=next_state,
        max_cursor=segment.max_cursor,
        warnings=list(segment.warnings),
        schema_changes=list(segment.schema_changes),
    )


def _stage_table(ctx: StreamContext, job: StreamJob, table: WrittenTable) -> StagedTable:
    parent_keys_file = None
    if table.parent is not None and table.parent_keys is not None:
        parent_keys_file = ctx.staging.write_keys(
            job.sync_id, f"{table.name}-{job.segment}", table.parent_keys
        )
    return StagedTable(
        name=table.name,
        files=table.files,
        rows=table.rows,
        keys=list(table.keys),
        parent_key=table.parent_key,
        parent=table.parent,
        parent_keys_file=parent_keys_file,
    )


# --- step 4: commit-to-Iceberg -------------------------------------------------------------


def commit_segment(ctx: StreamContext, staged: StagedSegment) -> StreamJob | None:
    """Commit one segment (children first, the parent last, carrying the state).

    Returns the job for the next segment, or None when the stream is done. Idempotent: a
    redelivered commit of an already committed segment changes nothing.
    """
    job = staged.job
    if job.full_refresh:
        _commit_full_refresh(ctx, staged)
    else:
        for table in sorted(staged.tables, key=lambda t: t.parent is None):
            state = _state_for(ctx, staged) if table.parent is None else {}
            _commit_incremental(ctx, job, table, state)
    if staged.done:
        return None
    return dataclasses.replace(
        finished_job(staged),
        segment=job.segment + 1,
        resume=staged.next_state,
        pending_cursor=staged.max_cursor,
    )


def finished_job(staged: StagedSegment) -> StreamJob:
    """The job with this segment counted: the stream's rows and pages so far."""
    job = staged.job
    rows = next((t.rows for t in staged.tables if t.parent is None), 0)
    return dataclasses.replace(job, rows=job.rows + rows, pages=job.pages + staged.pages)


def _state_for(ctx: StreamContext, staged: StagedSegment) -> dict[str, str]:
    job = staged.job
    if staged.done:
        # Never past the walk's start (minus the lookback): what changed while it ran is
        # read again by the next sync (INTERFACE.md, "under change and faults").
        lookback = timedelta(seconds=ctx.stream.cursor_lookback or 0)
        newest = bounded(staged.max_cursor, job.walk_start - lookback)
        cursor = newest if job.full_refresh else later_cursor(job.cursor, newest)
        return {"rq.complete": "true", "rq.cursor": cursor or ""}
    return {
        "rq.complete": "false",
        "rq.since": job.since or "",
        "rq.pending_cursor": staged.max_cursor or "",
        "rq.resume": orjson.dumps(staged.next_state).decode(),
        "rq.cursor": job.cursor or "",
        "rq.walk_started": job.walk_start.isoformat(),
    }


def _commit_incremental(
    ctx: StreamContext, job: StreamJob, table: StagedTable, state: dict[str, str]
) -> None:
    ctx.sink.commit(
        job.connection,
        table.name,
        table.files,
        mode="merge" if table.keys else "append",
        key_column=_match_column(table),
        parent_key_column=table.parent_key if table.parent else None,
        parent_keys=ctx.staging.read_keys(table.parent_keys_file),
        state=state,
        sync_id=job.sync_id,
        segment=job.segment,
        fence=job.fences.get(table.name),
    )


def _match_column(table: StagedTable) -> str | None:
    """The column a merge finds a row's older versions by. A one-column key is matched in its
    own column: the same rows as its text in `_rq_key`, but hashing numbers instead of
    strings takes a fraction of the time and memory (bench/README.md)."""
    if not table.keys:
        return None
    return table.keys[0] if len(table.keys) == 1 else KEY


def _commit_full_refresh(ctx: StreamContext, staged: StagedSegment) -> None:
    """Full refresh: each segment is merged onto a refresh branch of each table; the last
    one swaps every table's branch in (the children first, the parent with the state)."""
    job = staged.job
    for table in staged.tables:
        ctx.sink.stage_replace(
            job.connection,
            table.name,
            table.files,
            sync_id=job.sync_id,
            segment=job.segment,
            parent_key_column=table.parent_key if table.parent else None,
            parent_keys=ctx.staging.read_keys(table.parent_keys_file),
        )
    if not staged.done:
        return
    for name in [*map(ctx.stream.child_table, ctx.stream.expand), ctx.stream.name]:
        state = _state_for(ctx, staged) if name == ctx.stream.name else {}
        ctx.sink.finish_replace(
            job.connection, name, sync_id=job.sync_id, state=state, fence=job.fences.get(name)
        )


def maintain_stream_tables(ctx: StreamContext) -> list[TableReport]:
    """After a stream succeeded, its lease still held: maintain its tables that crossed
    RAWQUERY_MAINTAIN_AFTER_FILES (runner/maintain.py); what was done."""
    from rawquery_workers.runner.maintain import maintain_after_sync

    names = [ctx.stream.name, *map(ctx.stream.child_table, ctx.stream.expand)]
    return maintain_after_sync(ctx.settings, ctx.sink, ctx.connection, names)


def abandon(ctx: StreamContext, job: StreamJob) -> None:
    """After a failed stream: drop a full refresh's branch and files nothing refers to."""
    for name in [ctx.stream.name, *map(ctx.stream.child_table, ctx.stream.expand)]:
        if job.full_refresh:
            ctx.sink.abort_replace(job.connection, name, job.sync_id)
        ctx.sink.cleanup_orphans(job.connection, name, job.sync_id)
