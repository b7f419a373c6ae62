"""Side files of a sync under `<warehouse>/_rq_staging/<sync_id>/`: fetched records and key
lists that a later step (maybe on another worker) reads back. Removed when the sync ends."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs
from pyiceberg.io.pyarrow import PyArrowFileIO

from rawquery_workers.http import parse_json
from rawquery_workers.settings import Settings, get_settings

_BLOCK_BYTES = 4 * 1024 * 1024


def _json_line(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # an integer beyond 64 bits: the standard library keeps it exact
        return json.dumps(record, ensure_ascii=False).encode() + b"\n"


class Staging:
    """`fileio` holds the warehouse's `s3.*` properties (default: the settings'), so staging
    reaches an S3 warehouse through the same endpoint and keys as the Iceberg tables."""

    def __init__(self, warehouse: str, fileio: Mapping[str, str] | None = None) -> None:
        properties = get_settings().fileio_properties if fileio is None else dict(fileio)
        self._io = PyArrowFileIO(properties)
        self.filesystem, root = self._resolve(warehouse)
        self.root = f"{root.rstrip('/')}/_rq_staging"

    @classmethod
    def of(cls, settings: Settings) -> Staging:
        """The staging area of the configured warehouse."""
        return cls(settings.effective_warehouse, settings.fileio_properties)

    def _resolve(self, uri: str) -> tuple[fs.FileSystem, str]:
        """The pyarrow filesystem and path of `uri` (file://, s3://, ... as pyiceberg reads)."""
        scheme, netloc, path = PyArrowFileIO.parse_location(uri, self._io.properties)
        return self._io.fs_by_scheme(scheme, netloc), path

    def _dir(self, sync_id: str) -> str:
        return f"{self.root}/{sync_id}"

    def write_keys(self, sync_id: str, name: str, keys: pa.Array) -> str:
        path = f"{self._dir(sync_id)}/{name}.parquet"
        self.filesystem.create_dir(self._dir(sync_id), recursive=True)
        # Without a dictionary: keys are mostly distinct, and the dictionary's hash table
        # cost ~35 MB of peak RSS for 500k keys (a segment's parents) to encode nothing.
        pq.write_table(
            pa.table({"key": keys}), path, filesystem=self.filesystem, use_dictionary=False
        )
        return path

    def write_records(self, sync_id: str, name: str, records: Iterable[dict[str, Any]]) -> str:
        """Fetched records, as zstd-compressed JSON lines, for the transform step. `records`
        may be a generator: they are written as they come, never held together."""
        path = f"{self._dir(sync_id)}/{name}.jsonl.zst"
        self.filesystem.create_dir(self._dir(sync_id), recursive=True)
        with self.filesystem.open_output_stream(path, compression="zstd") as out:
            for record in records:
                out.write(_json_line(record))
        return path

    def read_records(self, path: str, chunk: int = 10_000) -> Iterator[list[dict[str, Any]]]:
        """The records of `write_records`, `chunk` at a time, reading the file in blocks."""
        rest = b""
        records: list[dict[str, Any]] = []
        with self.filesystem.open_input_stream(path, compression="zstd") as src:
            while block := src.read(_BLOCK_BYTES):
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    records.append(parse_json(line))  # type: ignore[arg-type]
                    if len(records) >= chunk:
                        yield records
                        records = []
        if rest.strip():
            records.append(parse_json(rest))  # type: ignore[arg-type]
        if records:
            yield records

    def read_keys(self, path: str | None) -> pa.Array | None:
        if path is None:
            return None
        return pq.read_table(path, filesystem=self.filesystem).column("key").combine_chunks()

    def read_column(self, files: list[str], column: str) -> pa.Array:
        """One column of the given Parquet data files (any URI the warehouse filesystem reads)."""
        chunks = []
        for uri in files:
            filesystem, path = self._resolve(uri)
            chunks.append(pq.read_table(path, columns=[column], filesystem=filesystem)[column])
        return pa.chunked_array(
            [c for chunk in chunks for c in chunk.chunks], pa.string()
        ).combine_chunks()

    def remove(self, sync_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filesystem.delete_dir(self._dir(sync_id))
