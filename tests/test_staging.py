"""The staging area's page files: streamed in, read back in chunks of pages, byte-exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from rawquery_workers.paginate.extract import records_json, records_of
from rawquery_workers.runner.staging import Staging


def test_pages_stream_in_and_come_back_in_chunks_exactly(tmp_path: Path) -> None:
    staging = Staging(str(tmp_path / "wh"))
    produced = 0
    record = b'{"id": %d, "big": %d, "text": "\\u00e9\\n\\"x\\"", "nested": {"a": [1, null]}}'
    bodies = [b'{"data": [%s]}' % (record % (i, 2**70 + i)) for i in range(2_501)]
    bodies[7] = b'{\n  "data": [\n    {"id": 7}\n  ]\n}\n'  # newlines inside a body stay

    def pages() -> Iterator[tuple[bytes, int]]:
        nonlocal produced
        for body in bodies:
            produced += 1
            yield body, 1
        yield orjson.dumps({"data": [{"id": n} for n in range(2_501, 2_504)]}), 3

    path = staging.write_pages("sync-1", "orders-0", pages())
    assert produced == 2_501
    chunks = list(staging.read_pages(path, chunk=1_000))
    assert [sum(c.counts) for c in chunks] == [1_000, 1_000, 504]
    assert [b for c in chunks for b in c.bodies][:-1] == bodies
    records = [r for c in chunks for r in records_of(c.bodies, "data")]
    assert records[0] == {"id": 0, "big": 2**70, "text": 'é\n"x"', "nested": {"a": [1, None]}}
    assert records[-4]["big"] == 2**70 + 2_500  # beyond 64 bits, not rounded through a float
    assert [r["id"] for r in records] == list(range(2_504))


def test_an_empty_segment_reads_back_as_no_chunk(tmp_path: Path) -> None:
    staging = Staging(str(tmp_path / "wh"))
    path = staging.write_pages("sync-1", "orders-0", iter(()))
    assert list(staging.read_pages(path)) == []


def test_a_truncated_page_file_is_an_error_naming_it(tmp_path: Path) -> None:
    staging = Staging(str(tmp_path / "wh"))
    path = staging.write_pages("sync-1", "orders-0", [(b'{"data": [{"id": 1}]}', 1)])
    with staging.filesystem.open_input_stream(path, compression="zstd") as src:
        whole = src.read()
    with staging.filesystem.open_output_stream(path, compression="zstd") as out:
        out.write(whole[:-5])
    with pytest.raises(OSError, match="orders-0.pages.zst ends inside a page"):
        list(staging.read_pages(path))


def test_a_pages_records_staged_as_json_come_back_exactly() -> None:
    records = [{"id": 1, "big": 2**70, "f": 1.5, "t": 'é\n"x"'}, {"id": 2, "n": None}]
    assert records_of([records_json(records)], None) == records
