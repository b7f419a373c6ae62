"""Sync state kept with the data: in each commit's snapshot summary and the table properties.

Every commit rawquery makes carries `rq.sync_id` and `rq.segment` (the idempotency key: a
redelivered segment finds its commit and commits nothing) plus the caller's state items
(`rq.cursor`, `rq.resume`, `rq.complete`, ...) as snapshot summary properties. A commit on
main also writes them as table properties (`rq.state.cursor`, ...) in the same
transaction, with the sequence number it gets and the last full refreshes swapped in:
expiring snapshots or compacting files, by rq or by any other engine, keeps a table's
properties, so the state survives where snapshot summaries do not (Spark's
`expire_snapshots(retain_last=1)` after its own `rewrite_data_files` leaves no snapshot of
ours). Readers take the properties and fall back to walking the snapshots (tables written
before the properties were). A full refresh stages its segments on the branch
`rq-replace-<sync_id>` (snapshots only: properties are the table's, not a branch's) and
ends with one commit on main marked `rq.replaced=true`.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot, ancestors_of

PREFIX = "rq."
SYNC_ID = "rq.sync_id"
SEGMENT = "rq.segment"
REPLACED = "rq.replaced"
MAIN = "main"
_BRANCH_PREFIX = "rq-replace-"
TABLE_PREFIX = "rq.state."  # table properties: main's state (see the module docstring)
SEQUENCE = "rq.state.sequence"  # the sequence number of the commit that wrote them
_REPLACED_SYNCS = "rq.state.replaced_syncs"  # comma list, newest last
_KEEP_REPLACED = 20
_BOOKKEEPING = (SEQUENCE, _REPLACED_SYNCS)


def replace_branch(sync_id: str) -> str:
    """The branch a full refresh stages its segments on."""
    return f"{_BRANCH_PREFIX}{sync_id}"


def snapshot_properties(
    state: Mapping[str, str], *, sync_id: str, segment: int | None, replaced: bool = False
) -> dict[str, str]:
    """The summary properties of one commit; state keys must already start with `rq.`."""
    wrong = sorted(k for k in state if not k.startswith(PREFIX))
    if wrong:
        raise ValueError(f"state keys must start with '{PREFIX}': {', '.join(wrong)}")
    props = {k: str(v) for k, v in state.items()}
    props[SYNC_ID] = sync_id
    if segment is not None:
        props[SEGMENT] = str(segment)
    if replaced:
        props[REPLACED] = "true"
    return props


def _props(snapshot: Snapshot) -> Mapping[str, str]:
    return snapshot.summary.additional_properties if snapshot.summary is not None else {}


def table_state_update(
    metadata: TableMetadata, props: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The table properties to set, and those to remove, for a commit on main carrying
    `props` (`snapshot_properties`), built on `metadata`: its state replaces the last."""
    current = metadata.properties
    new = {TABLE_PREFIX + k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
    new[SEQUENCE] = str(head_sequence(metadata) + 1)  # one snapshot per commit
    replaced = _replaced_syncs(metadata)
    if props.get(REPLACED) == "true":
        replaced = [*[s for s in replaced if s != props[SYNC_ID]], props[SYNC_ID]]
    if replaced:
        new[_REPLACED_SYNCS] = ",".join(replaced[-_KEEP_REPLACED:])
    stale = [k for k in current if k.startswith(TABLE_PREFIX) and k not in new]
    return new, stale


def _table_state(metadata: TableMetadata) -> dict[str, str]:
    """Main's state from the table properties, as `rq.*` keys ({} when none was written)."""
    return {
        PREFIX + k[len(TABLE_PREFIX) :]: v
        for k, v in metadata.properties.items()
        if k.startswith(TABLE_PREFIX) and k not in _BOOKKEEPING
    }


def _replaced_syncs(metadata: TableMetadata) -> list[str]:
    return [s for s in metadata.properties.get(_REPLACED_SYNCS, "").split(",") if s]


def segment_in(metadata: TableMetadata, sync_id: str, segment: int) -> bool:
    """Whether segment `segment` of sync `sync_id` is committed: a snapshot says so, or the
    table's state is that sync's at that segment or later (segments commit in order), or
    it is a full refresh already swapped in."""
    wanted = str(segment)
    if any(
        (p := _props(s)).get(SYNC_ID) == sync_id and p.get(SEGMENT) == wanted
        for s in metadata.snapshots
    ):
        return True
    state = _table_state(metadata)
    if state.get(SYNC_ID) == sync_id and state.get(SEGMENT, "").isdigit():
        return int(state[SEGMENT]) >= segment
    return sync_id in _replaced_syncs(metadata)


def replaced_in(metadata: TableMetadata, sync_id: str) -> bool:
    """Whether the full refresh of sync `sync_id` has already been swapped in."""
    if sync_id in _replaced_syncs(metadata):
        return True
    return any(
        (p := _props(s)).get(SYNC_ID) == sync_id and p.get(REPLACED) == "true"
        for s in metadata.snapshots
    )


def state_at(metadata: TableMetadata, ref: str = MAIN) -> dict[str, str]:
    """The `rq.*` state of `ref`: for main the table properties' when written, else that of
    the newest snapshot carrying it, from `ref`'s head back."""
    if ref == MAIN and SYNC_ID in (state := _table_state(metadata)):
        return state
    for snapshot in ancestors_of(metadata.snapshot_by_name(ref), metadata):
        props = _props(snapshot)
        if SYNC_ID in props:
            return {k: v for k, v in props.items() if k.startswith(PREFIX)}
    return {}


def head_sequence(metadata: TableMetadata) -> int:
    """The table's newest sequence number: a sync's fence (`foreign_commit`) starts there.
    (Format v1 tables have none, so they are not fenced; rawquery creates v2 tables.)"""
    return int(getattr(metadata, "last_sequence_number", 0) or 0)


def foreign_commit(metadata: TableMetadata, since: int, sync_id: str) -> str | None:
    """The id of another sync that committed to main after sequence number `since` (the
    head when sync `sync_id` started), or None. Snapshots without `rq.sync_id` (another
    engine's maintenance, an empty first snapshot) are nobody's. The table properties
    answer even when the snapshots in between were expired."""
    state, sequence = _table_state(metadata), metadata.properties.get(SEQUENCE, "")
    other = state.get(SYNC_ID)
    if other is not None and other != sync_id and sequence.isdigit() and int(sequence) > since:
        return other
    for snapshot in ancestors_of(metadata.snapshot_by_name(MAIN), metadata):
        if snapshot.sequence_number is not None and snapshot.sequence_number <= since:
            return None
        other = _props(snapshot).get(SYNC_ID)
        if other is not None and other != sync_id:
            return other
    return None


def holds_rows(metadata: TableMetadata, ref: str = MAIN) -> bool:
    """Whether `ref`'s head may hold rows (False: no snapshot, or one of 0 records)."""
    head = metadata.snapshot_by_name(ref)
    if head is None:
        return False
    total = _props(head).get("total-records")
    return total is None or total != "0"
