"""Side files of a sync under `<warehouse>/_rq_staging/<sync_id>/`: fetched pages and key
lists that a later step (maybe on another worker) reads back. Removed when the sync ends."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs
from pyiceberg.io.pyarrow import PyArrowFileIO

from rawquery_workers.settings import Settings, get_settings
from rawquery_workers.transform.columnar import PageBodies

_BLOCK_BYTES = 4 * 1024 * 1024


_HEADER = struct.Struct("<QQ")  # a staged page: its record count and its body's size


def _read_exactly(src: pa.NativeFile, size: int, path: str) -> bytes:
    """`size` bytes of `src`, b"" at its end; a file cut short is an error naming it."""
    data = src.read(size)
    while len(data) < size and (more := src.read(size - len(data))):
        data += more
    if data and len(data) < size:
        raise OSError(f"staging file {path} ends inside a page (truncated)")
    return bytes(data)


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
        # Without a dictionary: keys are mostly distinct, so its hash table would cost
        # memory growing with the segment to encode nothing (docs/decisions/005).
        pq.write_table(
            pa.table({"key": keys}), path, filesystem=self.filesystem, use_dictionary=False
        )
        return path

    def write_pages(self, sync_id: str, name: str, pages: Iterable[tuple[bytes, int]]) -> str:
        """Fetched pages (each page's records as a JSON array) with their record counts, for
        the transform step (zstd; each page is a 16-byte header, its record count and its
        size, then the bytes). `pages` may be a generator: they are written as they come."""
        path = f"{self._dir(sync_id)}/{name}.pages.zst"
        self.filesystem.create_dir(self._dir(sync_id), recursive=True)
        with self.filesystem.open_output_stream(path, compression="zstd") as out:
            for body, count in pages:
                out.write(_HEADER.pack(count, len(body)))
                out.write(body)
        return path

    def read_pages(self, path: str, chunk: int = 10_000) -> Iterator[PageBodies]:
        """The pages of `write_pages`, grouped until a group holds `chunk` records."""
        group = PageBodies([], [])
        with self.filesystem.open_input_stream(
            path, compression="zstd", buffer_size=_BLOCK_BYTES
        ) as src:
            while head := _read_exactly(src, _HEADER.size, path):
                count, size = _HEADER.unpack(head)
                group.bodies.append(_read_exactly(src, size, path))
                group.counts.append(count)
                if sum(group.counts) >= chunk:
                    yield group
                    group = PageBodies([], [])
        if group.bodies:
            yield group

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

    def leftovers(self) -> dict[str, tuple[int, float]]:
        """Every sync's staging directory: sync id -> (bytes, newest modification, epoch
        seconds). A sync that ended removes its own; what is left belongs to one that runs,
        or to one killed before it could."""
        found: dict[str, tuple[int, float]] = {}
        selector = fs.FileSelector(self.root, recursive=True, allow_not_found=True)
        for info in self.filesystem.get_file_info(selector):
            if info.type != fs.FileType.File:
                continue
            sync_id = info.path[len(self.root) :].lstrip("/").split("/", 1)[0]
            size, newest = found.get(sync_id, (0, 0.0))
            modified = info.mtime.timestamp() if info.mtime is not None else 0.0
            found[sync_id] = (size + (info.size or 0), max(newest, modified))
        return found
