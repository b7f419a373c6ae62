"""Item 10: the parsers we own, fuzzed: the HTTP/1.1 wire parser and the spec loader.

Hypothesis, derandomized (the same inputs on every run: CI stays stable), a fixed number
of inputs per test, each test checking it ran at least that many. The counts go into the
session tally (`parsers fuzzed`); RQ_FUZZ_SCALE=N runs N times as many, new ones each
run (a longer hunt: N=10, about 37,000 inputs, takes some 3.5 minutes).

- **Wire** (`transport.StdlibTransport`): the bytes a server sends are fed through a
  socketpair to the transport's own `handle_request` (no network; only the connection
  checkout is replaced, by one handing out the socketpair). Where the socket reads split
  the bytes is drawn too. Inputs: arbitrary bytes; valid responses generated over the
  format (status lines, headers, folding, 1xx, chunked with extensions and trailers,
  Content-Length, close-delimited, gzip/deflate/zstd bodies), which must come back exact;
  and the same responses mutated (bit flips, truncation, junk inserted, ranges dropped or
  repeated, numbers in the head or a chunk size replaced by huge or malformed ones).
  Every input ends, well within a second, in a response or in one of the documented
  errors (RemoteProtocolError, DecodingError, ResponseTooLarge), never another exception;
  under a body cap the body and the memory allocated stay bounded by it.
- **Spec** (`spec.loading.load_spec_file`): the example specs (examples/*/spec.json and the
  demo spec) mutated: keys dropped or added (unknown, or fields of another level), wrong
  types, bad enum values, huge strings, odd characters, huge numbers, nesting up to 3,000
  levels, then the JSON text itself damaged. Every input gives a Spec (which round-trips
  through `spec_to_json`) or a SpecError with one line per problem, each naming a JSON
  path that is in the document (or, for text that is not JSON, its line and column);
  never another exception.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import re
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rawquery_workers.errors import SpecError
from rawquery_workers.http.response_limits import ResponseLimits, ResponseTooLarge, zstandard
from rawquery_workers.http.transport import StdlibTransport, _Connection
from rawquery_workers.spec.loading import load_spec_file, parse_spec, spec_to_json
from tests.reliability.tally import TALLY

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Runs:
    """Inputs each fuzz test ran (explicit examples included)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        TALLY.parser_inputs_fuzzed += 1


RUNS = Runs()
SCALE = max(1, int(os.environ.get("RQ_FUZZ_SCALE", "1")))


def fuzz(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Settings of every fuzz test: `examples` inputs, derandomized, no example database.
    RQ_FUZZ_SCALE=N runs N times as many, new ones each run (a longer hunt, not for CI)."""
    return settings(
        max_examples=examples * SCALE,
        derandomize=SCALE == 1,
        database=None,
        deadline=None,  # time is checked per input, with a margin for a busy CI machine
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


def ran(name: str, least: int) -> None:
    count = RUNS.counts.get(name, 0)
    print(f"{name}: {count} inputs")
    assert count >= least, f"{name} ran {count} inputs, fewer than {least}"


# ==========================================================================================
# The wire: StdlibTransport reading raw bytes off a socketpair
# ==========================================================================================

CAP = 64 * 1024  # the body cap of the bounded runs
BOUNDED = ResponseLimits(deadline=10.0, max_bytes=CAP)
UNBOUNDED = ResponseLimits()
READ_TIMEOUT = 10.0  # the peer always closes: no input may wait for a timeout
SECONDS = 1.0  # the most one input may take
PRE_WRITTEN = 32 * 1024  # inputs up to this are in the socket before the first read
# Documented: what the ApiClient retries (RemoteProtocolError, DecodingError) or reports
# as too large. Timeouts are not in it: every input ends with the peer closing.
DOCUMENTED = (httpx.RemoteProtocolError, httpx.DecodingError, ResponseTooLarge)


class _Reads:
    """A socket whose reads return at most the next of `sizes` bytes (cycled)."""

    def __init__(self, sock: socket.socket, sizes: list[int]) -> None:
        self._sock, self._sizes, self._next = sock, sizes, 0

    def recv(self, size: int) -> bytes:
        cap = self._sizes[self._next % len(self._sizes)]
        self._next += 1
        return self._sock.recv(min(size, cap))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Wire(StdlibTransport):
    """StdlibTransport whose one connection is the socket given: everything from sending
    the request head to the httpx.Response is the transport's own code."""

    def __init__(self, limits: ResponseLimits, sock: Any) -> None:
        super().__init__(limits=limits)
        self._sock = sock

    def _checkout(self, *args: object) -> _Connection:  # type: ignore[override]
        return _Connection(self._sock)


@dataclass
class Outcome:
    response: httpx.Response | None
    error: BaseException | None
    seconds: float
    peak: int  # bytes allocated at most while reading (tracemalloc), 0 when not traced


def _feed(sock: socket.socket, raw: bytes) -> None:
    try:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
    except OSError:  # the transport hung up on an answer it refused
        pass


def fetch(
    raw: bytes,
    *,
    limits: ResponseLimits = BOUNDED,
    reads: list[int] | None = None,
    method: str = "GET",
    traced: bool = False,
) -> Outcome:
    """`raw` as the server's whole answer (then EOF) to one request through StdlibTransport."""
    ours, theirs = socket.socketpair()
    ours.settimeout(READ_TIMEOUT)
    feeder = None
    if len(raw) <= PRE_WRITTEN:
        _feed(theirs, raw)
    else:
        feeder = threading.Thread(target=_feed, args=(theirs, raw), daemon=True)
        feeder.start()
    transport = _Wire(limits, _Reads(ours, reads) if reads else ours)
    request = httpx.Request(method, "http://fuzz.invalid/x")
    response: httpx.Response | None = None
    error: BaseException | None = None
    if traced:  # only while reading: hypothesis' own allocations are not counted
        tracemalloc.start()
    started = time.monotonic()
    try:
        response = transport.handle_request(request)
        response.read()
        # What the ApiClient reads of a response.
        _ = (response.status_code, response.reason_phrase, response.http_version)
        _ = (list(response.headers.multi_items()), response.headers.get("retry-after"))
        _ = (response.headers.get("link"), response.text)
    except BaseException as exc:  # noqa: BLE001 - judged by the caller
        response, error = None, exc
    seconds = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    if traced:
        tracemalloc.stop()
    transport.close()
    ours.close()
    if feeder is not None:
        feeder.join(READ_TIMEOUT)
    theirs.close()
    if error is not None and getattr(error, "request", request) is not request:
        raise AssertionError(f"{error!r} carries another request")
    return Outcome(response, error, seconds, peak)


def check(raw: bytes, outcome: Outcome, limits: ResponseLimits = BOUNDED) -> Outcome:
    """A response or a documented error, in time, within the cap."""
    error = outcome.error
    if error is not None and not isinstance(error, DOCUMENTED):
        raise AssertionError(f"undocumented {type(error).__name__} for {raw[:300]!r}") from error
    if error is not None:
        message = str(error)
        assert message and "\n" not in message, repr(message)
    assert outcome.seconds < SECONDS, f"{outcome.seconds:.2f} s for {raw[:300]!r}"
    if outcome.response is not None:
        assert 100 <= outcome.response.status_code <= 999
        if limits.max_bytes is not None:
            assert len(outcome.response.content) <= limits.max_bytes
    if outcome.peak:
        # Bodies at most the cap, received and decoded, and a decoding step past it (1 MiB,
        # held twice as zlib joins its output): never what a header or a bomb announces.
        assert outcome.peak < 4 * CAP + (2 << 20) + 8 * len(raw), (outcome.peak, raw[:200])
    return outcome


# --- valid responses, generated --------------------------------------------------------------

CODINGS = ["gzip", "deflate", "raw-deflate", "gzip, identity", "deflate, gzip", "x-unknown"]
if zstandard is not None:
    CODINGS += ["zstd", "gzip, zstd"]


def encode(body: bytes, coding: str) -> bytes:
    if coding == "gzip" or coding == "gzip, identity":
        return gzip.compress(body, mtime=0)
    if coding == "deflate":
        return zlib.compress(body)
    if coding == "raw-deflate":
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return packer.compress(body) + packer.flush()
    if coding == "deflate, gzip":
        return gzip.compress(zlib.compress(body), mtime=0)
    if coding == "zstd":
        assert zstandard is not None
        return zstandard.ZstdCompressor().compress(body)
    if coding == "gzip, zstd":
        return encode(gzip.compress(body, mtime=0), "zstd")
    return body


@dataclass
class Generated:
    raw: bytes
    status: int
    body: bytes  # as the response must carry it (decoded)
    method: str = "GET"


token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1)
header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
bodies = st.binary(max_size=400) | st.builds(
    lambda items: json.dumps({"data": items}).encode(),
    st.lists(st.dictionaries(token, st.integers() | header_value, max_size=4), max_size=8),
)


@st.composite
def responses(draw: st.DrawFn) -> Generated:
    """A valid HTTP/1.x response (any framing, coding, line ending), with its body."""
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    status = draw(st.sampled_from([200, 200, 201, 204, 206, 301, 304, 400, 404, 429, 500, 503]))
    reason = draw(st.sampled_from([b" OK", b"", b" ", b" Some Reason", b"\tTab"]))
    method = "HEAD" if draw(st.integers(0, 9)) == 0 else "GET"
    body = draw(bodies)
    coding = draw(st.none() | st.sampled_from(CODINGS))
    payload = encode(body, coding) if coding else body
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    bodiless = status in (204, 304) or method == "HEAD"
    headers: list[bytes] = []
    for name, value in draw(st.lists(st.tuples(token, header_value), max_size=4)):
        if name.lower() not in ("content-length", "transfer-encoding", "content-encoding"):
            headers.append(f"X-{name}: {value}".encode())
    if draw(st.booleans()) and headers:  # an obsolete folded continuation line
        headers.append(b" " + draw(header_value).encode("ascii").strip() + b"x")
    if coding:
        name = draw(st.sampled_from(["Content-Encoding", "content-encoding", "CONTENT-ENCODING"]))
        headers.append(f"{name}: {coding.replace('raw-', '')}".encode())
    framed = payload
    if framing == "length":
        headers.append(b"Content-Length: %d" % len(payload))
    elif framing == "chunked":
        headers.append(b"Transfer-Encoding: " + draw(st.sampled_from([b"chunked", b"Chunked"])))
        sizes = draw(st.lists(st.integers(1, 64), max_size=12))
        parts, at = [], 0
        for size in [*sizes, len(payload)]:
            piece = payload[at : at + size]
            at += len(piece)
            if piece:
                hex_size = draw(st.sampled_from(["%x", "%X", "00%x"])) % len(piece)
                ext = draw(st.sampled_from(["", ";a=b", ' ; name="v"']))
                parts.append(f"{hex_size}{ext}".encode() + eol + piece + eol)
        trailer = draw(st.sampled_from([b"", b"X-Check: 1" + eol]))
        framed = b"".join(parts) + b"0" + eol + trailer + eol
    else:
        headers.append(b"Connection: close")
    if bodiless:
        framed = b""
        if framing == "close":
            headers.pop()
    informational = b""
    if draw(st.integers(0, 4)) == 0:
        informational = b"HTTP/1.1 100 Continue" + eol + eol
    head = version + b" %d" % status + reason + eol + b"".join(h + eol for h in headers) + eol
    expected = b"" if bodiless else body
    return Generated(informational + head + framed, status, expected, method)


# --- mutations -------------------------------------------------------------------------------

JUNK = [
    b"\r\n", b"\n", b"\r", b"\x00", b" ", b"\t", b":", b";", b",", b"\xff\xfe", b"\x80",
    b"\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\n", b"0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Content-Length: 99999999999999999\r\n",
    b"Content-Encoding: gzip\r\n", b"Content-Encoding: deflate, gzip, zstd, br\r\n",
    b"Connection: close\r\n", b"FFFFFFFFFFFFFFFF\r\n", b"\x1f\x8b\x08\x00",
]  # fmt: skip
HUGE = [
    b"99999999999999999", b"999999999999999999", b"9999999999999999999", b"1" + b"0" * 40,
    b"FFFFFFFFFFFFFFFF", b"FFFFFFFFFFFFFFFFF", b"7FFFFFFFFFFFFFFF", b"10000000000000000",
    b"0", b"00000000000000000000001", b"-1", b"+1", b"1e3", b"0x10", b" 1 ", b"1_000",
    b"\xd9\xa3", b"", b"4294967296", b"2147483648",
]  # fmt: skip
NUMBERS = re.compile(rb"[0-9A-Fa-f]+")


@st.composite
def mutated(draw: st.DrawFn, raw: bytes) -> bytes:
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        kind = draw(st.sampled_from(["flip", "cut", "junk", "drop", "repeat", "number"]))
        if kind == "flip" and raw:
            at = min(at, len(raw) - 1)
            raw = raw[:at] + bytes([raw[at] ^ (1 << draw(st.integers(0, 7)))]) + raw[at + 1 :]
        elif kind == "cut":
            raw = raw[:at]
        elif kind == "junk":
            junk = draw(st.sampled_from(JUNK) | st.binary(min_size=1, max_size=8))
            raw = raw[:at] + junk + raw[at:]
        elif kind == "drop":
            raw = raw[:at] + raw[at + draw(st.integers(1, 16)) :]
        elif kind == "repeat":
            piece = raw[at : at + draw(st.integers(1, 64))]
            raw = raw[:at] + piece * draw(st.integers(2, 4)) + raw[at:]
        elif kind == "number" and (numbers := list(NUMBERS.finditer(raw))):
            number = draw(st.sampled_from(numbers))
            raw = raw[: number.start()] + draw(st.sampled_from(HUGE)) + raw[number.end() :]
    return raw


reads = st.none() | st.lists(st.integers(1, 70), min_size=1, max_size=6)


# --- the tests -------------------------------------------------------------------------------


WIRE_VALID = 400


def test_valid_responses_come_back_exact() -> None:
    @fuzz(WIRE_VALID)
    @given(case=responses(), reads=reads)
    # Found by the mutations below: an empty body under stacked codings kept its
    # Content-Encoding header, and httpx's zstd decoder failed on it (DecodingError).
    @example(
        case=Generated(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, zstd\r\nContent-Length: 0\r\n\r\n",
            200,
            b"",
        ),
        reads=None,
    )
    def valid(case: Generated, reads: list[int] | None) -> None:
        RUNS.add("wire: valid")
        outcome = check(case.raw, fetch(case.raw, reads=reads, method=case.method))
        assert outcome.error is None, (outcome.error, case.raw)
        assert outcome.response is not None
        assert outcome.response.status_code == case.status
        assert outcome.response.content == case.body, case.raw

    valid()
    ran("wire: valid", WIRE_VALID)


WIRE_MUTATED = 1200


def test_mutated_responses_end_in_a_response_or_a_documented_error() -> None:
    @fuzz(WIRE_MUTATED)
    @given(data=st.data(), reads=reads, bounded=st.booleans())
    def mutations(data: st.DataObject, reads: list[int] | None, bounded: bool) -> None:
        case = data.draw(responses())
        raw = data.draw(mutated(case.raw))
        RUNS.add("wire: mutated")  # after the draws: an input hypothesis gave up on is not run
        limits = BOUNDED if bounded else UNBOUNDED
        check(raw, fetch(raw, limits=limits, reads=reads, traced=bounded), limits)

    mutations()
    ran("wire: mutated", WIRE_MUTATED)


WIRE_ARBITRARY = 600
HEAD = b"HTTP/1.1 200 OK\r\n"


def test_arbitrary_bytes_end_in_a_response_or_a_documented_error() -> None:
    @fuzz(WIRE_ARBITRARY)
    @given(
        raw=st.binary(max_size=600)
        | st.builds(lambda tail: HEAD + tail, st.binary(max_size=600))
        | st.builds(
            lambda tail: HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + tail,
            st.binary(max_size=600),
        ),
        reads=reads,
    )
    @example(raw=HEAD + b"X: " + b"h" * 140_000 + b"\r\n\r\n", reads=None)
    @example(raw=HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"1" * 140_000, reads=None)
    @example(raw=b"HTTP/1.1 100 Continue\r\n\r\n" * 5000, reads=None)
    @example(raw=HEAD + b"Content-Length: 99999999999999999\r\n\r\n{}", reads=None)
    @example(raw=HEAD + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nab", reads=None)
    @example(raw=HEAD + b"Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", reads=None)
    @example(
        raw=HEAD + b"Content-Encoding: gzip\r\n\r\n" + gzip.compress(bytes(16 << 20)), reads=None
    )
    def arbitrary(raw: bytes, reads: list[int] | None) -> None:
        RUNS.add("wire: arbitrary")
        check(raw, fetch(raw, reads=reads, traced=True))
        check(raw, fetch(raw, limits=UNBOUNDED, reads=reads), UNBOUNDED)

    arbitrary()
    ran("wire: arbitrary", WIRE_ARBITRARY)


# ==========================================================================================
# The spec loader: JSON text -> Spec or SpecError
# ==========================================================================================

SPEC_FILES = sorted((ROOT / "examples").glob("*/spec.json"))
DEMO = resources.files("rawquery_workers.demo").joinpath("shop.json").read_bytes()
BASES: list[dict[str, Any]] = [orjson.loads(p.read_bytes()) for p in SPEC_FILES]
BASES.append(orjson.loads(DEMO))
# Names from every level of the spec, so a key may be moved where it does not belong.
KNOWN_KEYS = sorted(
    {
        "version", "base_url", "type", "auth", "streams", "rate_limit", "name", "endpoint",
        "method", "data_path", "primary_key", "cursor_field", "cursor_lookback", "pagination",
        "params", "query", "variables", "sync_modes", "flatten", "expand", "fields", "types",
        "include", "rename", "param", "limit_param", "page_size", "cursor_path", "token_url",
        "grant_type", "scopes", "pre_request", "headers", "extract", "body", "url", "token",
        "client_secret", "password", "header", "query_param", "next_url_path", "rel",
        "requests_per_second", "burst", "retry_on", "backoff", "max_retries", "parent_key",
    }
)  # fmt: skip
ODD_STRINGS = [
    "", " ", "x", "pages", "OFFSET", "Bearer", "none ", "\x00", "a\nb", "a\rb", "\u2028",
    "\u2029", "\x85", "\x1c", "\x0b", "\ufeff", "é", "日本", "\U0001f600", "{{", "}}",
    "{{auth.token}}", "{{cursor}}", "{{nope}}", "{{auth.username}", "$.data", "data.-1.id",
    "a..b", ".", "[0]", "http://", "https://", "ftp://x", "//x", "https://a b", "1stream",
    "DROP TABLE x", "streams[0]", '"quoted"', "back\\slash",
]  # fmt: skip
NUMBERS_ODD = [0, -1, 1, 2.5, -0.0, 1e308, -1e308, 5e-324, 2**31, 2**53 + 1, 2**63 - 1, 2**63,
               2**64 - 1, 2**64, -(2**63) - 1, 10**30, 10**300]  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.sampled_from(NUMBERS_ODD)
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(ODD_STRINGS)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
SPEC_SECONDS = 5.0  # the most one spec may take (the slowest, 3 MB of text: ~0.2 s)
DEPTHS = [2, 50, 253, 254, 255, 256, 500, 900, 990, 1000, 1023, 1024, 1025, 3000]


@dataclass(frozen=True)
class Deep:
    """A value nested `depth` levels deep (serialised as text: json.dumps would recurse)."""

    depth: int
    kind: str  # "list" or "object"
    leaf: str  # JSON text


def _dumps(spec: Any) -> bytes:
    """JSON text of a spec that may hold Deep values (written as text, without recursion)."""
    deep: list[Deep] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Deep):
            deep.append(value)
            return f"\x00deep{len(deep) - 1}\x00"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(spec), ensure_ascii=False)
    for number, value in enumerate(deep):
        opener, closer = ("[", "]") if value.kind == "list" else ('{"a": ', "}")
        nested = opener * value.depth + value.leaf + closer * value.depth
        text = text.replace(json.dumps(f"\x00deep{number}\x00"), nested)
    return text.encode()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


@st.composite
def mutated_specs(draw: st.DrawFn) -> bytes:
    """An example spec, mutated 1-4 times, as JSON text (damaged as text 1 time in 8)."""
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(spec)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = spec
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, Deep):
            continue
        key = path[-1]
        kind = draw(
            st.sampled_from(
                ["drop", "wrong_type", "add_key", "odd_string", "huge", "deep", "number"]
            )
        )
        if kind == "drop":
            del parent[key]
        elif kind == "wrong_type":
            parent[key] = draw(json_values)
        elif kind == "add_key":
            target = parent if isinstance(parent, dict) else spec
            name = draw(st.sampled_from(KNOWN_KEYS) | st.sampled_from(ODD_STRINGS))
            target[name] = draw(json_values)
        elif kind == "odd_string":
            parent[key] = draw(st.sampled_from(ODD_STRINGS))
        elif kind == "huge":
            parent[key] = draw(st.sampled_from(["a", "é", "{{", "x.", "\u2028"])) * draw(
                st.sampled_from([1000, 100_000, 1_000_000])
            )
        elif kind == "deep":
            leaf = draw(st.sampled_from(['"x"', "1", "null", "{}", "[]"]))
            shape = draw(st.sampled_from(["list", "object"]))
            parent[key] = Deep(draw(st.sampled_from(DEPTHS)), shape, leaf)
        else:
            parent[key] = draw(st.sampled_from(NUMBERS_ODD))
    text = _dumps(spec)
    if draw(st.integers(0, 7)) == 0:
        text = draw(mutated(text))
    return text


# A JSON path as loading.render_path writes it: `top level`, or `a.b[0]["x y"]`.
_PLAIN = r'[^.\[\]\s"]+'
_QUOTED = r'\["(?:[^"\\]|\\.)*"\]'
_PATH = re.compile(rf"top level|(?:{_PLAIN}|{_QUOTED})(?:\.{_PLAIN}|\[\d+\]|{_QUOTED})*")
_SEGMENT = re.compile(
    rf"(?P<name>{_PLAIN})|\[(?P<index>\d+)\]|\[(?P<quoted>\"(?:[^\"\\]|\\.)*\")\]"
)
_NOT_JSON = re.compile(r"\S+:\d+:\d+: invalid JSON: .+|invalid JSON: keys? .+ twice in one object")


def _segments(path: str) -> list[str | int]:
    if path == "top level":
        return []
    out: list[str | int] = []
    for match in _SEGMENT.finditer(path):
        if match["name"] is not None:
            out.append(match["name"])
        elif match["index"] is not None:
            out.append(int(match["index"]))
        else:
            out.append(json.loads(match["quoted"]))
    return out


def _in_document(path: list[str | int], document: Any) -> bool:
    """Every segment but the last is in the document (the last may be a missing field)."""
    node = document
    for seg in path[:-1]:
        if (isinstance(node, dict) and isinstance(seg, str) and seg in node) or (
            isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node)
        ):
            node = node[seg]
        else:
            return False
    return True


def check_spec(text: bytes, where: Path) -> None:
    where.write_bytes(text)
    started = time.monotonic()
    try:
        spec = load_spec_file(where)
    except SpecError as exc:
        assert time.monotonic() - started < SPEC_SECONDS, text[:300]
        message = str(exc)
        assert exc.problems, message
        assert len(message.splitlines()) == len(exc.problems), message  # one line each
        document = None
        for problem in exc.problems:
            assert problem.strip() and problem.isprintable(), repr(problem)  # one clean line
            if _NOT_JSON.fullmatch(problem):
                continue
            path, sep, what = problem.partition(": ")
            assert sep and what.strip() and _PATH.fullmatch(path), repr(problem)
            if document is None:
                document = orjson.loads(text)
            assert _in_document(_segments(path), document), (problem, text[:500])
        return
    assert time.monotonic() - started < SPEC_SECONDS, text[:300]
    # A spec that loads round-trips: what is stored validates again, to the same spec.
    again = parse_spec(spec_to_json(spec))
    assert again == spec


SPECS = 1000
GRAPHQL = orjson.loads((ROOT / "examples" / "github_graphql" / "spec.json").read_bytes())


def _graphql(**top: Any) -> bytes:
    """The GraphQL example with top-level changes, and stream changes under `stream`."""
    spec = copy.deepcopy(GRAPHQL)
    spec["streams"][0].update(top.pop("stream", {}))
    spec.update(top)
    return _dumps(spec)


def test_mutated_specs_load_or_say_what_is_wrong(tmp_path_factory: pytest.TempPathFactory) -> None:
    where = tmp_path_factory.mktemp("fuzz") / "spec.json"

    @fuzz(SPECS)
    @given(text=mutated_specs())
    # Found by this test (each was another exception, or a problem split over lines, or a
    # path not in the document):
    # a wrong-type value nested over 254 levels: TypeError from orjson.dumps quoting it;
    @example(text=_graphql(version=Deep(300, "list", '"x"')))
    # nesting over ~990 levels: RecursionError from the duplicate-key check (json.loads);
    @example(text=_graphql(version=Deep(1000, "list", "1")))
    # a line separator in a value a model's message quotes ('...' is not an absolute URL);
    @example(text=_graphql(base_url="\u2028" * 1000))
    # pydantic's JsonValue tags in the path (`variables.a[0].list[0].list[0]...`);
    @example(text=_graphql(stream={"variables": {"a": [Deep(300, "list", "1")]}}))
    # a key holding a control character, in the path raw (`expand.\b.parent_key`).
    @example(text=_graphql(stream={"expand": {"\b": {}}}))
    def specs(text: bytes) -> None:
        RUNS.add("spec: mutated")
        check_spec(text, where)

    specs()
    ran("spec: mutated", SPECS)


SPEC_TEXTS = 400


def test_arbitrary_json_text_loads_or_says_what_is_wrong(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    where = tmp_path_factory.mktemp("fuzz") / "spec.json"
    texts = (
        st.binary(max_size=200)
        | st.builds(lambda v: json.dumps(v).encode(), json_values)
        | st.builds(lambda v: json.dumps({"version": "1", "streams": v}).encode(), json_values)
    )

    @fuzz(SPEC_TEXTS)
    @given(text=texts)
    # Found by this test: U+0085 in a value a message quotes (a line break to
    # str.splitlines). Found fixing it: a duplicate key holding a line break, quoted raw.
    @example(text=b'{"":"","streams":{"\\u0085":null}}')
    @example(text=b'{"a\\nb": 1, "a\\nb": 2}')
    def arbitrary(text: bytes) -> None:
        RUNS.add("spec: arbitrary")
        check_spec(text, where)

    arbitrary()
    ran("spec: arbitrary", SPEC_TEXTS)
