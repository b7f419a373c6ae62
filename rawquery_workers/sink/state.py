"""Sync state kept in Iceberg snapshot summaries (`rq.*` properties).

Every commit rawquery makes carries `rq.sync_id` and `rq.segment` (the idempotency key: a
redelivered segment finds its snapshot and commits nothing) plus the caller's state items
(`rq.cursor`, `rq.resume`, `rq.complete`, ...). Only the snapshot that wrote them carries
them, so reading the state walks back from a ref's head to the first snapshot that has them.
A full refresh stages its segments on the branch `rq-replace-<sync_id>` and ends with one
snapshot on main marked `rq.replaced=true`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot, ancestors_of

PREFIX = "rq."
SYNC_ID = "rq.sync_id"
SEGMENT = "rq.segment"
REPLACED = "rq.replaced"
MAIN = "main"
_BRANCH_PREFIX = "rq-replace-"


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


def segment_in(snapshots: Iterable[Snapshot], sync_id: str, segment: int) -> bool:
    """Whether one of `snapshots` was written by segment `segment` of sync `sync_id`."""
    wanted = str(segment)
    return any(
        (p := _props(s)).get(SYNC_ID) == sync_id and p.get(SEGMENT) == wanted for s in snapshots
    )


def replaced_in(snapshots: Iterable[Snapshot], sync_id: str) -> bool:
    """Whether the full refresh of sync `sync_id` has already been swapped in."""
    return any(
        (p := _props(s)).get(SYNC_ID) == sync_id and p.get(REPLACED) == "true" for s in snapshots
    )


def state_at(metadata: TableMetadata, ref: str = MAIN) -> dict[str, str]:
    """The `rq.*` properties of the newest snapshot carrying them, from `ref`'s head back."""
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
    engine's maintenance, an empty first snapshot) are nobody's."""
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
