"""Hostile HTTP responses: every response is bounded in time, size and shape.

A raw-socket server on 127.0.0.1 answers each request as a hostile API would: a body or a
status line dripped a byte at a time, `Content-Length: 10^17`, a chunked or close-delimited
body that never ends, a 2 MB gzip bomb (2 GiB inflated), a record with 50,000 fields and
nesting 10,000 levels deep. Each sync runs as a real `rq` process, so its wall time and
peak RSS are its own: it must end within two minutes and under 1 GB, with a clear error
that names the limit and its setting (or, for the wide record, land every column), and
retry only what is worth retrying. Last, a request in flight when a segment's time is up
is cut there: the segment commits what it has and the next segment asks again.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pyarrow.parquet as pq
import pytest

from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.sink import open_sink
from tests.reliability.support import PYTHON, Result, rq, rq_env, table_rows, write_json
from tests.reliability.tally import TALLY

pytestmark = pytest.mark.reliability
LIMIT_SECONDS = 120  # every hostile sync ends well within this
LIMIT_RSS = 1 << 30  # ... and below this peak resident memory
RETRIES = 2  # rate_limit.max_retries of the specs below: 3 attempts for what is retried
DRIP = 0.25  # seconds between the bytes of a dripped answer
DEADLINE = "1.5"  # RAWQUERY_REQUEST_DEADLINE_SECONDS of the slow-drip syncs


# --- a hostile server ----------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    number: int  # 1-based, over all connections
    path: str
    params: dict[str, str]


Answer = Callable[[socket.socket, Request], None]


class HostileServer:
    """Reads each request's head, counts it, and lets `answer` write anything at all to
    the socket; a client hanging up (an OSError on the server side) ends the answer."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stopping = False

    def __enter__(self) -> HostileServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            try:
                while target := _request_target(reader):
                    parts = urlsplit(target)
                    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                    with self._lock:
                        request = Request(len(self.requests) + 1, parts.path, params)
                        self.requests.append(request)
                    self.answer(conn, request)
            except OSError:
                pass


def _request_target(reader: Any) -> str:
    """The target of the next request on the connection ('' when it closed); the rest of
    its head is skipped (the syncs send GETs, without a body)."""
    line = reader.readline()
    while line and reader.readline() not in (b"\r\n", b"\n", b""):
        pass
    return line.split(b" ")[1].decode() if line.count(b" ") >= 2 else ""


def _head(*headers: str, status: str = "HTTP/1.1 200 OK") -> bytes:
    return ("\r\n".join([status, "Content-Type: application/json", *headers]) + "\r\n\r\n").encode()


def _complete(body: bytes, *headers: str) -> bytes:
    return _head(f"Content-Length: {len(body)}", *headers) + body


def _until_hung_up(conn: socket.socket, seconds: float = 60) -> None:
    conn.settimeout(seconds)
    while conn.recv(65536):
        pass


def _drip(conn: socket.socket, data: bytes) -> None:
    for byte in data:
        conn.sendall(bytes([byte]))
        time.sleep(DRIP)


def drip_body(conn: socket.socket, _: Request) -> None:
    conn.sendall(_head("Content-Length: 200"))
    _drip(conn, b'{"data": [' + b" " * 189 + b"]}")  # 50 s in all, were it read to the end


def drip_status_line(conn: socket.socket, _: Request) -> None:
    _drip(conn, _complete(b'{"data": []}'))


def huge_length(conn: socket.socket, _: Request) -> None:
    conn.sendall(_head("Content-Length: 100000000000000000") + b'{"data": [')
    _until_hung_up(conn)


def _forever(conn: socket.socket, piece: bytes, frame: Callable[[bytes], bytes]) -> None:
    sent = 0
    while sent < 8 << 30:  # a client that kept reading would be 8 GiB in: the test fails
        conn.sendall(frame(piece))
        sent += len(piece)


RECORDS = b'{"id": 1, "name": "again"}, ' * 2500  # ~70 KB of records, sent again and again


def endless_chunked(conn: socket.socket, _: Request) -> None:
    conn.sendall(_head("Transfer-Encoding: chunked") + b'a\r\n{"data": [\r\n')
    _forever(conn, RECORDS, lambda piece: b"%x\r\n%b\r\n" % (len(piece), piece))


def endless_until_close(conn: socket.socket, _: Request) -> None:
    conn.sendall(_head("Connection: close") + b'{"data": [')
    _forever(conn, RECORDS, lambda piece: piece)


def gzip_bomb(inflated: int = 2 << 30) -> bytes:
    """A valid gzip body of ~2 MB that inflates to `inflated` zero bytes: deflate blocks
    of 1 MiB of zeros, each ending in a full flush (so every one is the same bytes)."""
    block = bytes(1 << 20)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    same = deflater.compress(block) + deflater.flush(zlib.Z_FULL_FLUSH)
    count = inflated // len(block)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = crc.to_bytes(4, "little") + (inflated % (1 << 32)).to_bytes(4, "little")
    return header + same * count + deflater.flush() + trailer


def _deep(depth: int) -> bytes:
    return b'{"data": [{"id": 1, "tree": ' + b"[" * depth + b"]" * depth + b"}]}"


# --- running a sync ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    result: Result
    seconds: float
    max_rss: int  # bytes


# `rq` as its own process, reporting at exit the peak resident memory of its own address
# space (VmHWM). Not wait4's ru_maxrss: that also counts the pytest process it was forked
# from, whatever the sync itself used.
_MARK = "rq-peak-rss-kib"
_MEASURED_RQ = f"""
import atexit, sys

def peak():
    with open("/proc/self/status") as status:
        kib = next(line for line in status if line.startswith("VmHWM:")).split()[1]
    sys.stderr.write("\\n{_MARK} " + kib + "\\n")

atexit.register(peak)
from rawquery_workers.cli.app import main
main(sys.argv[1:])
"""


def sync_process(name: str, cwd: Path, **env: str) -> Run:
    """`rq connections sync NAME` as its own process: its result, wall time and peak RSS."""
    started = time.monotonic()
    done = subprocess.run(
        [PYTHON, "-c", _MEASURED_RQ, "connections", "sync", name],
        env=rq_env(**env),
        cwd=cwd,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=LIMIT_SECONDS + 30,
    )
    seconds = time.monotonic() - started
    err, _, peak = done.stderr.decode(errors="replace").rpartition(_MARK)
    assert peak, f"no peak RSS reported: {err}"
    out = done.stdout.decode(errors="replace")
    return Run(Result(done.returncode, out, err), seconds, int(peak.split()[0]) * 1024)


def connect(name: str, url: str, home: Path, **stream: Any) -> None:
    spec = {
        "version": "1",
        "base_url": url,
        "auth": {"type": "none"},
        "rate_limit": {"max_retries": RETRIES, "backoff_base": 0.01, "max_wait": 0.05},
        "streams": [{"name": "items", "endpoint": "/items", "data_path": "data", **stream}],
    }
    write_json(home.parent / f"{name}.json", spec)
    result = rq("connect", name, "--spec", f"{name}.json")
    assert result.code == 0, result.text


def stream_status(name: str) -> dict[str, Any]:
    result = rq("connections", "status", name, "--json")
    (status,) = orjson.loads(result.out)["streams"]
    return status


def assert_bounded(run: Run) -> None:
    assert run.seconds < LIMIT_SECONDS, f"the sync took {run.seconds:.0f} s"
    assert run.max_rss < LIMIT_RSS, f"the sync peaked at {run.max_rss >> 20} MiB"
    assert "Traceback" not in run.result.text and "internal error" not in run.result.text


# --- time ----------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [drip_body, drip_status_line], ids=["body", "status-line"])
def test_a_slow_drip_ends_at_the_request_deadline_and_is_retried(
    answer: Answer, rq_home: Path
) -> None:
    with HostileServer(answer) as server:
        connect("drip", server.url, rq_home)
        TALLY.faults_injected += 1
        run = sync_process("drip", rq_home.parent, RAWQUERY_REQUEST_DEADLINE_SECONDS=DEADLINE)
        attempts = len(server.requests)
    assert_bounded(run)
    assert run.result.code == 1, run.result.text
    status = stream_status("drip")
    assert status["status"] == "failed"
    error = status["error"]
    assert "request deadline of 1.5 s" in error, error
    assert "RAWQUERY_REQUEST_DEADLINE_SECONDS" in error, error
    assert attempts == RETRIES + 1, f"{attempts} requests: retried like a timeout"
    # each attempt ended at its deadline, not at the last of the 50 s of dripped bytes
    assert run.seconds < 20 + (RETRIES + 1) * float(DEADLINE)
    assert table_rows("drip", "items") == []


def test_the_segment_time_limit_cuts_a_request_in_flight(
    rq_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAWQUERY_SEGMENT_SECONDS=1.5 and a second page that drips for 10 s the first time:
    the request is cut when the segment's time is up, the segment commits page 1, and the
    next segment asks for page 2 again (its first request: awaited however long it takes)."""
    records = [{"id": i, "name": f"n{i}"} for i in range(1, 5)]
    dripped = threading.Event()

    def pages(conn: socket.socket, request: Request) -> None:
        offset = int(request.params.get("offset", 0))
        body = orjson.dumps({"data": records[offset : offset + 2]})
        if offset == 2 and not dripped.is_set():
            dripped.set()
            conn.sendall(_head(f"Content-Length: {len(body) + 40}"))
            _drip(conn, body + b" " * 40)  # ~10 s
            return
        conn.sendall(_complete(body))

    pagination = {"type": "offset", "param": "offset", "limit_param": "limit", "page_size": 2}
    with HostileServer(pages) as server:
        connect("cut", server.url, rq_home, primary_key=["id"], pagination=pagination)
        monkeypatch.setenv("RAWQUERY_SEGMENT_SECONDS", "1.5")
        TALLY.faults_injected += 1
        started = time.monotonic()
        result = rq("connections", "sync", "cut")
        seconds = time.monotonic() - started
        offsets = [r.params.get("offset") for r in server.requests]
    assert result.code == 0, result.text
    assert offsets == ["0", "2", "2", "4"], offsets  # page 2 cut once, then asked again
    assert seconds < 8, f"{seconds:.1f} s: the dripping request was not cut at 1.5 s"
    assert sorted(table_rows("cut", "items"), key=lambda r: r["id"]) == records
    status = stream_status("cut")
    assert status["status"] == "succeeded" and status["rows"] == 4, status


# --- size ----------------------------------------------------------------------------------

SIZE_CASES: dict[str, tuple[Answer, list[str]]] = {
    "content-length-1e17": (huge_length, ["100000000000000000 bytes", "Content-Length"]),
    "endless-chunked": (endless_chunked, ["over the limit of 256 MiB"]),
    "endless-until-close": (endless_until_close, ["over the limit of 256 MiB"]),
}


@pytest.mark.parametrize("case", sorted(SIZE_CASES))
def test_a_body_over_the_size_cap_fails_at_once_without_retries(case: str, rq_home: Path) -> None:
    answer, words = SIZE_CASES[case]
    with HostileServer(answer) as server:
        connect("big", server.url, rq_home)
        TALLY.bad_inputs_tried += 1
        run = sync_process("big", rq_home.parent)  # the default cap, 256 MiB
        attempts = len(server.requests)
    _assert_too_large("big", run, attempts, words)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()


def test_a_gzip_bomb_is_stopped_as_it_inflates(rq_home: Path, bomb: bytes) -> None:
    assert len(bomb) < 3 << 20  # ~2 MB on the wire, 2 GiB inflated

    def answer(conn: socket.socket, _: Request) -> None:
        conn.sendall(_complete(bomb, "Content-Encoding: gzip"))

    with HostileServer(answer) as server:
        connect("bomb", server.url, rq_home)
        TALLY.bad_inputs_tried += 1
        run = sync_process("bomb", rq_home.parent)
        attempts = len(server.requests)
    _assert_too_large("bomb", run, attempts, ["decompresses (gzip) to more than", "256 MiB"])


def _assert_too_large(name: str, run: Run, attempts: int, words: list[str]) -> None:
    assert_bounded(run)
    assert run.result.code == 1, run.result.text
    status = stream_status(name)
    assert status["status"] == "failed"
    error = status["error"]
    for word in [*words, "RAWQUERY_MAX_RESPONSE_BYTES", "not retried"]:
        assert word in error, error
    assert attempts == 1, f"{attempts} requests: a body over the cap is not retried"
    assert table_rows(name, "items") == []


# --- shape ---------------------------------------------------------------------------------


def test_a_record_with_50000_fields_lands_in_seconds(rq_home: Path) -> None:
    record = {"id": 1, **{f"field_{i}": i for i in range(50_000)}}
    body = orjson.dumps({"data": [record]})

    def answer(conn: socket.socket, _: Request) -> None:
        conn.sendall(_complete(body))

    with HostileServer(answer) as server:
        connect("wide", server.url, rq_home, primary_key=["id"])
        TALLY.bad_inputs_tried += 1
        run = sync_process("wide", rq_home.parent)
    assert_bounded(run)
    assert run.result.code == 0, run.result.text
    # >300 s before (list membership tests over the columns: quadratic); ~20 s on an idle
    # 2-core machine now, nearly all of it pyiceberg's per-column metadata work
    assert run.seconds < 45, f"{run.seconds:.1f} s"
    columns, (row,) = _landed("wide", "items")
    assert len([c for c in columns if not c.startswith("_rq_")]) == 50_001
    assert len(row) == len(columns) and row["field_0"] == 0 and row["field_49999"] == 49_999


def _landed(namespace: str, name: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The table's columns and its data file's rows, read with pyarrow: a pyiceberg scan
    matches file columns to the table's by a linear search per column (minutes here)."""
    reset_settings()
    table = open_sink(get_settings()).tables.load(namespace, name)
    (task,) = table.scan().plan_files()
    with table.io.new_input(task.file.file_path).open() as stream:
        rows = pq.read_table(stream).to_pylist()
    return [f.name for f in table.schema().fields], rows


def test_nesting_10000_levels_deep_is_refused_once_saying_why(rq_home: Path) -> None:
    body = _deep(10_000)

    def answer(conn: socket.socket, _: Request) -> None:
        conn.sendall(_complete(body))

    with HostileServer(answer) as server:
        connect("deep", server.url, rq_home)
        TALLY.bad_inputs_tried += 1
        run = sync_process("deep", rq_home.parent)
        attempts = len(server.requests)
    assert_bounded(run)
    assert run.result.code == 1, run.result.text
    error = stream_status("deep")["error"]
    assert "nesting deeper than 1024 levels" in error, error
    assert "not valid JSON" not in error and "not retried" in error, error
    assert attempts == 1, f"{attempts} requests: a body too deep is not retried"


def test_nesting_at_the_limit_still_lands(rq_home: Path) -> None:
    """1,023 levels under the record (1,024 with the body's own): past orjson's writer
    (254) and the standard library's (~1,000), stored whole as a JSON string."""
    body = b'{"data": [{"id": 1, "tree": ' + b"[" * 1021 + b"]" * 1021 + b"}]}"

    def answer(conn: socket.socket, _: Request) -> None:
        conn.sendall(_complete(body))

    with HostileServer(answer) as server:
        connect("edge", server.url, rq_home, primary_key=["id"])
        TALLY.bad_inputs_tried += 1
        result = rq("connections", "sync", "edge")
    assert result.code == 0, result.text
    (row,) = table_rows("edge", "items")
    assert row["tree"] == "[" * 1021 + "]" * 1021
