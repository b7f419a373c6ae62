"""A fast local paginated API for the benchmarks, run in its own process.

    .venv/bin/python bench/api.py --records 200000 --page-size 100 [--token T] [--rate 5]

Every page of the default page size is rendered to bytes at start-up, so serving is a dict
lookup and a socket write (an asyncio protocol with a minimal HTTP/1.1 keep-alive parser;
the server is not the bottleneck). Record shape (issue 6): 12 fields, a nested object
(`customer` with a nested `address`), a string array (`tags`) and 1-3 `line_items`.

    GET /offset?offset=&limit=          {"data": [...], "total": N}
    GET /pages?page=&per_page=          {"data": [...], "page": p}         (page 1 first)
    GET /cursor?cursor=&limit=          {"data": [...], "next_cursor": "c…" | null}
    GET /next?page=                     {"data": [...], "next": "http://…/next?page=p+1" | null}
    GET /link?page=                     [...] with `Link: <…/link?page=p+1>; rel="next"`
    GET /parents                        {"data": [{"id": 1}, …]}: `--parents` of them
    GET /parents/ID/orders              {"data": [...]}: parent ID's share of the records
    GET /offset?updated_since=T&…       {"data": [...], "total": n}: the changed records only
    GET /_stats                         {"requests", "cpu_seconds", "log": [[t, status], …]}
    POST /_reset                        clears the request log and counters
    POST /_change?ids=1,2,…             those records change: a new `status`, `updated_at` now

Options: a bearer token (401 without it), an enforced rate limit (a token bucket of
`rate` per second and `burst`; over it: 429 with Retry-After), with every request's
monotonic time and status kept in the log for limiter precision, and `--latency` seconds
added to every answer (a real API's 50-300 ms; answers overlap, as a real server's do).

From Python: `with BenchApi(records=200_000) as api: api.url` starts it in a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import orjson

_STATUSES = ["pending", "paid", "shipped", "delivered", "refunded"]
_CHANNELS = ["web", "store", "phone", "partner"]
_CITIES = [("Paris", "FR"), ("Lyon", "FR"), ("Berlin", "DE"), ("Madrid", "ES"), ("Oslo", "NO")]
_PRODUCTS = [
    ("SKU-1", "Coffee beans", 12.5),
    ("SKU-2", "Grinder", 89.0),
    ("SKU-3", "Filter papers", 4.25),
    ("SKU-4", "Kettle", 45.0),
    ("SKU-5", "Mug", 9.9),
]
_BASE = datetime(2024, 1, 1, tzinfo=UTC)
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            429: "Too Many Requests"}  # fmt: skip


def make_record(i: int) -> dict[str, Any]:
    """Record `i` (1-based): 12 top-level fields, deterministic."""
    items = []
    for n in range(1 + i % 3):
        sku, title, price = _PRODUCTS[(i + n) % len(_PRODUCTS)]
        items.append(
            {
                "id": i * 10 + n,
                "sku": sku,
                "title": title,
                "quantity": 1 + (i + n) % 4,
                "unit_price": price,
            }  # fmt: skip
        )
    customer = 1 + (i * 7) % 5000
    city, country = _CITIES[customer % len(_CITIES)]
    created = _BASE + timedelta(seconds=37 * i)
    return {
        "id": i,
        "number": f"#{100000 + i}",
        "status": _STATUSES[i % len(_STATUSES)],
        "total": round(sum(it["unit_price"] * it["quantity"] for it in items), 2),
        "currency": "EUR",
        "channel": _CHANNELS[i % len(_CHANNELS)],
        "paid": i % 5 != 0,
        "customer": {
            "id": customer,
            "email": f"customer{customer}@example.com",
            "address": {"city": city, "country": country},
        },
        "tags": ["web"] if i % 2 else ["store", "promo"],
        "line_items": items,
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "updated_at": (created + timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
    }


class Pages:
    """The records and every page of the default page size, rendered once."""

    def __init__(self, records: int, page_size: int) -> None:
        self.count = records
        self.page_size = page_size
        self.chunks: list[bytes] = []  # "rec,rec,…" bytes of page k (0-based), default size
        for start in range(0, records, page_size):
            stop = min(records, start + page_size)
            rows = [make_record(i + 1) for i in range(start, stop)]
            self.chunks.append(orjson.dumps(rows)[1:-1])
        self._cache: dict[tuple[str, int, int, str], bytes] = {}

    def warm(self, host: str) -> None:
        """Render every offset-style page now (what the benchmarks read), not on first use."""
        for start in range(0, self.count + 1, self.page_size):
            self.body("offset", start, self.page_size, host)

    def records(self, offset: int, limit: int) -> bytes:
        """`[…]` of records offset .. offset+limit (0-based offsets)."""
        offset, limit = max(0, offset), max(0, limit)
        if limit == self.page_size and offset % limit == 0:
            k = offset // limit
            return b"[" + (self.chunks[k] if k < len(self.chunks) else b"") + b"]"
        stop = min(self.count, offset + limit)
        return orjson.dumps([make_record(i + 1) for i in range(offset, stop)])

    def body(self, style: str, offset: int, limit: int, host: str) -> tuple[bytes, list[str]]:
        key = (style, offset, limit, host)
        cached = self._cache.get(key)
        if cached is not None:
            return cached, self._headers(style, offset, limit, host)
        data = self.records(offset, limit)
        more = offset + limit < self.count
        page = offset // limit + 1 if limit else 1
        if style == "offset":
            body = b'{"data":' + data + b',"total":' + str(self.count).encode() + b"}"
        elif style == "pages":
            body = b'{"data":' + data + b',"page":' + str(page).encode() + b"}"
        elif style == "cursor":
            token = orjson.dumps(f"c{offset + limit}" if more else None)
            body = b'{"data":' + data + b',"next_cursor":' + token + b"}"
        elif style == "next":
            url = f"http://{host}/next?page={page + 1}&per_page={limit}" if more else None
            body = b'{"data":' + data + b',"next":' + orjson.dumps(url) + b"}"
        else:  # link
            body = data
        if limit == self.page_size:
            self._cache[key] = body
        return body, self._headers(style, offset, limit, host)

    def _headers(self, style: str, offset: int, limit: int, host: str) -> list[str]:
        if style != "link" or offset + limit >= self.count:
            return []
        page = offset // limit + 2
        return [f'Link: <http://{host}/link?page={page}&per_page={limit}>; rel="next"']


class Limit:
    """An enforced token bucket (None rate: unlimited)."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), time.monotonic()

    def allow(self, now: float) -> tuple[bool, float]:
        if self.rate is None:
            return True, 0.0
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True, 0.0
        return False, (1.0 - self.tokens) / self.rate


class Server:
    def __init__(
        self, pages: Pages, token: str | None, limit: Limit, latency: float = 0.0, parents: int = 0
    ) -> None:
        self.pages, self.token, self.limit = pages, token, limit
        self.latency, self.parents = latency, parents
        self.log: list[tuple[float, int]] = []
        self.requests = 0
        self.changed: list[dict[str, Any]] = []  # in updated_at order
        self.changes = 0

    def answer(
        self, method: str, target: str, headers: dict[str, str]
    ) -> tuple[int, bytes, list[str]]:
        path, _, query = target.partition("?")
        if path == "/_stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            stats = {"requests": self.requests, "log": self.log,
                     "cpu_seconds": usage.ru_utime + usage.ru_stime}  # fmt: skip
            return 200, orjson.dumps(stats), []
        if path == "/_change":
            self._change([int(i) for i in dict(parse_qsl(query))["ids"].split(",")])
            return 200, b"{}", []
        if path == "/_reset":
            self.log.clear()
            self.requests = 0
            return 200, b"{}", []
        self.requests += 1
        now = time.monotonic()
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return self._logged(now, 401, b'{"error":"invalid or missing bearer token"}', [])
        allowed, wait = self.limit.allow(now)
        if not allowed:
            retry = [f"Retry-After: {max(1, round(wait + 0.5))}"]
            return self._logged(now, 429, b'{"error":"rate limited"}', retry)
        try:
            status, body, extra = self._page(path, dict(parse_qsl(query)), headers)
        except (ValueError, KeyError):
            status, body, extra = 400, b'{"error":"bad query parameter"}', []
        return self._logged(now, status, body, extra)

    def _change(self, ids: list[int]) -> None:
        self.changes += 1
        # now: a client may keep a cursor from the future back to its own clock
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        fresh = set(ids)
        self.changed = [r for r in self.changed if r["id"] not in fresh]
        for i in ids:
            record = make_record(i)
            record |= {"status": f"changed-{self.changes}", "updated_at": stamp}
            self.changed.append(record)

    def _logged(
        self, now: float, status: int, body: bytes, extra: list[str]
    ) -> tuple[int, bytes, list[str]]:
        if self.limit.rate is not None or self.token is not None:
            self.log.append((now, status))
        return status, body, extra

    def _page(
        self, path: str, params: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, bytes, list[str]]:
        host = headers.get("host", "127.0.0.1")
        size = self.pages.page_size
        if path == "/offset" and "updated_since" in params:
            offset, limit = int(params.get("offset", 0)), int(params.get("limit", size))
            since = datetime.fromisoformat(params["updated_since"])  # after it, as many APIs
            rows = [r for r in self.changed if datetime.fromisoformat(r["updated_at"]) > since]
            body = {"data": rows[offset : offset + limit], "total": len(rows)}
            return 200, orjson.dumps(body), []
        if path == "/offset":
            offset, limit = int(params.get("offset", 0)), int(params.get("limit", size))
            style = "offset"
        elif path == "/cursor":
            cursor = params.get("cursor") or "c0"
            offset, limit = int(cursor[1:]), int(params.get("limit", size))
            style = "cursor"
        elif path == "/parents":
            return 200, orjson.dumps({"data": [{"id": n} for n in range(1, self.parents + 1)]}), []
        elif path.startswith("/parents/") and self.parents:
            share = self.pages.count // self.parents
            parent = int(path.split("/")[2])
            if not 1 <= parent <= self.parents:
                return 404, b'{"error":"no such parent"}', []
            data = self.pages.records((parent - 1) * share, share)
            return 200, b'{"data":' + data + b"}", []
        elif path in ("/pages", "/next", "/link"):
            limit = int(params.get("per_page", size))
            offset = (int(params.get("page", 1)) - 1) * limit
            style = path[1:]
        else:
            return 404, b'{"error":"not found"}', []
        body, extra = self.pages.body(style, offset, limit, host)
        return 200, body, extra


class Protocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; GET/POST without request bodies."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", 0) or 0)
            self.buffer = self.buffer[length:]  # request bodies are ignored
            status, body, extra = self.server.answer(method, target, headers)
            lines_out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}",
                         "Content-Type: application/json", f"Content-Length: {len(body)}",
                         *extra]  # fmt: skip
            answer = ("\r\n".join(lines_out) + "\r\n\r\n").encode() + body
            close = headers.get("connection", "").lower() == "close"
            if self.server.latency > 0 and not target.startswith("/_"):
                loop = asyncio.get_running_loop()
                loop.call_later(self.server.latency, self._send, answer, close)
            else:
                self._send(answer, close)
            if close:
                return

    def _send(self, answer: bytes, close: bool) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(answer)
        if close:
            self.transport.close()


def serve(args: argparse.Namespace) -> None:
    pages = Pages(args.records, args.page_size)
    limit = Limit(args.rate, args.burst or max(1, int(args.rate or 1)))
    server = Server(pages, args.token, limit, args.latency, args.parents)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: Protocol(server), "127.0.0.1", args.port,
                                       backlog=1024)  # fmt: skip
        port = srv.sockets[0].getsockname()[1]
        pages.warm(f"127.0.0.1:{port}")
        print(f"READY {port}", flush=True)
        await srv.serve_forever()

    asyncio.run(main())


class BenchApi:
    """Starts `bench/api.py` in a subprocess; `url` is its base URL. A context manager."""

    def __init__(
        self,
        records: int = 200_000,
        page_size: int = 100,
        token: str | None = None,
        rate: float | None = None,
        burst: int | None = None,
        latency: float = 0.0,
        parents: int = 0,
    ) -> None:
        self.args = [f"--records={records}", f"--page-size={page_size}"]
        self.args += [f"--latency={latency}", f"--parents={parents}"]
        self.args += [f"--token={token}"] if token else []
        self.args += [f"--rate={rate}"] if rate else []
        self.args += [f"--burst={burst}"] if burst else []
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BenchApi:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *self.args],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the pages are rendered
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"bench API did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def stats(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/_stats") as response:
            return orjson.loads(response.read())

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/_reset", method="POST")).read()

    def change(self, ids: list[int]) -> None:
        """Records `ids` change (`POST /_change`): `?updated_since=` now returns them."""
        import urllib.request

        joined = ",".join(map(str, ids))
        request = urllib.request.Request(f"{self.url}/_change?ids={joined}", method="POST")
        urllib.request.urlopen(request).read()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def __enter__(self) -> BenchApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=None)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--burst", type=int, default=None)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to answers")
    parser.add_argument("--parents", type=int, default=0, help="parents at /parents")
    serve(parser.parse_args())


if __name__ == "__main__":
    main()
