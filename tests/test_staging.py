"""The staging area's record files: streamed in, read back in chunks, exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rawquery_workers.staging import Staging


def test_records_stream_in_and_come_back_in_chunks_exactly(tmp_path: Path) -> None:
    staging = Staging(str(tmp_path / "wh"))
    produced = 0

    def records() -> Iterator[dict[str, object]]:
        nonlocal produced
        for i in range(25_001):
            produced += 1
            yield {"id": i, "big": 2**70 + i, "text": 'é\n"x"', "nested": {"a": [1, None]}}

    path = staging.write_records("sync-1", "orders-0", records())
    assert produced == 25_001
    chunks = list(staging.read_records(path, chunk=10_000))
    assert [len(c) for c in chunks] == [10_000, 10_000, 5_001]
    flat = [r for c in chunks for r in c]
    assert flat[0] == {"id": 0, "big": 2**70, "text": 'é\n"x"', "nested": {"a": [1, None]}}
    assert flat[-1]["big"] == 2**70 + 25_000  # beyond 64 bits, not rounded through a float
    assert [r["id"] for r in flat] == list(range(25_001))


def test_an_empty_segment_reads_back_as_no_chunk(tmp_path: Path) -> None:
    staging = Staging(str(tmp_path / "wh"))
    path = staging.write_records("sync-1", "orders-0", iter(()))
    assert list(staging.read_records(path)) == []
