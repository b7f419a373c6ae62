"""Bounds on one HTTP response: a deadline for the whole exchange and a cap on its body.

A socket read timeout bounds each wait for bytes, not the response: a server sending one
byte every few seconds keeps a request alive forever. A body is held in memory whole, so a
declared, chunked or close-delimited body with no end, or a small compressed body that
inflates to gigabytes, takes a worker down. `ResponseLimits` carries both bounds:

- `deadline`: seconds from the start of a request to its last body byte (connecting and
  every read included). A caller may end it earlier, at a `time.monotonic()` instant put
  in the request's extensions under `NOT_AFTER` (the ApiClient does, for the time a
  segment has left). Past it: `DeadlineExceeded`, an httpx.ReadTimeout, so it is retried
  as a timeout; `caller` tells whose limit it was.
- `max_bytes`: the most a body may hold as received and, separately, once decoded
  (gzip, deflate, zstd, br). A `Content-Length` over it fails at once (nothing is ever
  allocated from a header); other bodies fail as they pass it; decoding inflates a step at
  a time and fails as soon as the output passes it. `ResponseTooLarge` is not retried:
  the same request would get the same body.

`StdlibTransport` (transport.py) applies both on the wire. `BoundedTransport` applies them
to another transport's responses (the proxy transports httpx provides): its body is read
chunk by chunk under the cap, checking the deadline between chunks; the wait for the
response head is bounded only by the read timeout there. Both decode the body here, so
their responses carry the decoded bytes and no `Content-Encoding` header (httpx would
otherwise decode again, unbounded).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import httpx

try:  # as httpx: br is accepted (and decoded) only when a Brotli binding is installed
    import brotli  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import brotlicffi as brotli  # type: ignore[import-not-found, no-redef, unused-ignore]
    except ImportError:
        brotli = None
try:
    import zstandard
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None  # type: ignore[assignment]

NOT_AFTER = "rawquery.not_after"  # request extension: a time.monotonic() instant
DEADLINE_SETTING = "RAWQUERY_REQUEST_DEADLINE_SECONDS"
SIZE_SETTING = "RAWQUERY_MAX_RESPONSE_BYTES"
_STEP = 1024 * 1024  # decoded bytes per decompression step: the most the cap is overshot
_BROTLI_STEP = 1024  # compressed bytes per brotli step (its API has no output bound)


@dataclass(frozen=True, slots=True)
class ResponseLimits:
    """`deadline` seconds per request and `max_bytes` per body; None: unbounded."""

    deadline: float | None = None
    max_bytes: int | None = None

    def budget(self, request: httpx.Request) -> Budget:
        """The bounds of one request, starting now."""
        until = None if self.deadline is None else time.monotonic() + self.deadline
        not_after = request.extensions.get(NOT_AFTER)
        caller = not_after is not None and (until is None or not_after < until)
        return Budget(not_after if caller else until, self.deadline, caller, self.max_bytes)


@dataclass(frozen=True, slots=True)
class Budget:
    """One request's bounds: `until` (a time.monotonic() instant, or None) set by the
    limits' `deadline` or, when `caller`, by the request's NOT_AFTER; `max_bytes`."""

    until: float | None
    deadline: float | None
    caller: bool
    max_bytes: int | None

    def left(self) -> float | None:
        """Seconds left (never below 0), or None without a deadline."""
        return None if self.until is None else max(0.0, self.until - time.monotonic())

    def check(self) -> None:
        """DeadlineExceeded when the time is up."""
        if self.until is not None and time.monotonic() >= self.until:
            raise self.exceeded()

    def exceeded(self) -> DeadlineExceeded:
        if self.caller:
            return DeadlineExceeded(
                "the response was not complete when the caller's time ran out", caller=True
            )
        return DeadlineExceeded(
            f"the response was not complete within the request deadline of "
            f"{self.deadline:g} s ({DEADLINE_SETTING}): the server sends too slowly or "
            "never finishes",
            caller=False,
        )

    def count(self, total: int) -> None:
        """ResponseTooLarge once a body being received holds `total` bytes."""
        if self.max_bytes is not None and total > self.max_bytes:
            raise ResponseTooLarge(f"the response body is over {_limit(self.max_bytes)}")

    def declared(self, length: int) -> None:
        """ResponseTooLarge at once for a Content-Length over the cap."""
        if self.max_bytes is not None and length > self.max_bytes:
            raise ResponseTooLarge(
                f"the response declares a body of {length} bytes (Content-Length), over "
                f"{_limit(self.max_bytes)}"
            )


class DeadlineExceeded(httpx.ReadTimeout):
    """The response did not arrive in full in time; `caller`: the request's NOT_AFTER
    (not the limits' deadline) was the bound."""

    def __init__(self, message: str, *, caller: bool, request: httpx.Request | None = None):
        super().__init__(message, request=request)
        self.caller = caller


class ResponseTooLarge(httpx.TransportError):
    """The body, as received or decoded, is over `ResponseLimits.max_bytes`."""


def _limit(max_bytes: int) -> str:
    return f"the limit of {_size(max_bytes)} ({SIZE_SETTING}={max_bytes})"


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.4g} {unit}"
    return f"{count} bytes"


# --- decoding ------------------------------------------------------------------------------


def encodings_of(values: Iterable[bytes | str]) -> list[str]:
    """The content codings of Content-Encoding header values, in the order applied."""
    out: list[str] = []
    for value in values:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        out += [v.strip().lower() for v in text.split(",") if v.strip()]
    return out


def decode(body: bytes, encodings: list[str], max_bytes: int | None) -> bytes:
    """`body` with its content codings undone, last applied first (as httpx does: codings
    it does not know, and `identity`, are skipped). ResponseTooLarge as soon as a decoded
    body passes `max_bytes`; httpx.DecodingError for data a decoder refuses."""
    for coding in reversed(encodings):
        decoder = _DECODERS.get(coding)
        if decoder is not None and body:
            body = _bounded(coding, decoder(body), max_bytes)
    return body


def _bounded(coding: str, pieces: Iterator[bytes], max_bytes: int | None) -> bytes:
    parts: list[bytes] = []
    total = 0
    try:
        for piece in pieces:
            total += len(piece)
            if max_bytes is not None and total > max_bytes:
                raise ResponseTooLarge(
                    f"the response body decompresses ({coding}) to more than {_limit(max_bytes)}"
                )
            parts.append(piece)
    except zlib.error as exc:
        raise httpx.DecodingError(f"{coding}: {exc}") from exc
    except Exception as exc:
        if _codec_error(exc):
            raise httpx.DecodingError(f"{coding}: {exc}") from exc
        raise
    return b"".join(parts)


def _codec_error(exc: Exception) -> bool:
    return (zstandard is not None and isinstance(exc, zstandard.ZstdError)) or (
        brotli is not None and isinstance(exc, brotli.error)
    )


def _inflate(data: bytes, wbits: int) -> Iterator[bytes]:
    """zlib/gzip/raw deflate, at most _STEP bytes of output a step."""
    decompressor = zlib.decompressobj(wbits)
    pending = data
    while True:
        piece = decompressor.decompress(pending, _STEP)
        yield piece
        pending = decompressor.unconsumed_tail
        if decompressor.eof or (not pending and len(piece) < _STEP):
            return


def _gunzip(data: bytes) -> Iterator[bytes]:
    return _inflate(data, zlib.MAX_WBITS | 16)


def _deflate(data: bytes) -> Iterator[bytes]:
    """A zlib stream or, when its first step fails, raw deflate (httpx's rule: servers
    send both as `deflate`)."""
    pieces = _inflate(data, zlib.MAX_WBITS)
    try:
        first = next(pieces)
    except zlib.error:
        yield from _inflate(data, -zlib.MAX_WBITS)
        return
    yield first
    yield from pieces


def _unzstd(data: bytes) -> Iterator[bytes]:
    assert zstandard is not None
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    while piece := reader.read(_STEP):
        yield piece


def _unbrotli(data: bytes) -> Iterator[bytes]:
    assert brotli is not None
    decompressor = brotli.Decompressor()
    process = getattr(decompressor, "decompress", None) or decompressor.process
    for start in range(0, len(data), _BROTLI_STEP):
        yield process(data[start : start + _BROTLI_STEP])


_DECODERS: dict[str, Callable[[bytes], Iterator[bytes]]] = {
    "gzip": _gunzip,
    "deflate": _deflate,
    **({"zstd": _unzstd} if zstandard is not None else {}),
    **({"br": _unbrotli} if brotli is not None else {}),
}


def without_encoding(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Header pairs without Content-Encoding (the body they go with is decoded)."""
    return [(n, v) for n, v in headers if n.lower() != b"content-encoding"]


# --- another transport's responses, bounded ------------------------------------------------


class BoundedTransport(httpx.BaseTransport):
    """`inner`'s responses read under `limits` and decoded here (see the module doc)."""

    def __init__(self, inner: httpx.BaseTransport, limits: ResponseLimits) -> None:
        self.inner = inner
        self.limits = limits

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        budget = self.limits.budget(request)
        response = self.inner.handle_request(request)
        try:
            raw = _read_stream(response, budget)
            body = decode(
                raw, encodings_of(response.headers.get_list("content-encoding")), budget.max_bytes
            )
        except (DeadlineExceeded, ResponseTooLarge, httpx.DecodingError) as exc:
            exc.request = request
            raise
        finally:
            response.close()
        return httpx.Response(
            response.status_code,
            headers=without_encoding(response.headers.raw),
            stream=httpx.ByteStream(body),
            request=request,
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.inner.close()


def _read_stream(response: httpx.Response, budget: Budget) -> bytes:
    budget.check()
    parts: list[bytes] = []
    total = 0
    length = response.headers.get("content-length", "").strip()
    if length.isdigit():
        budget.declared(int(length))
    for part in response.stream:  # type: ignore[union-attr]
        total += len(part)
        budget.count(total)
        budget.check()
        parts.append(part)
    return b"".join(parts)
