"""A small, realistic orders API served on 127.0.0.1 for `rq demo` and the tests.

GET /v1/orders?offset=&limit=      offset pagination, `{"data": [...], "total": N}`
GET /v1/customers?page=&per_page=  page-number pagination, `{"results": [...]}`
Both need `Authorization: Bearer <token>`. Orders carry a nested customer (with a nested
address), a string array of tags and an array of line items, like a shop's order export.

`python -m rawquery_workers.demo.sample_api [--port 8080]` serves it until interrupted (the
URL and token are printed); `rq demo` runs it in-process instead.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

DEMO_TOKEN = "demo-token-not-a-secret"
_CITIES = [("Paris", "FR"), ("Lyon", "FR"), ("Berlin", "DE"), ("Madrid", "ES"), ("Oslo", "NO")]
_PRODUCTS = [
    ("SKU-1", "Coffee beans", 12.5),
    ("SKU-2", "Grinder", 89.0),
    ("SKU-3", "Filter papers", 4.25),
    ("SKU-4", "Kettle", 45.0),
]
_STATUSES = ["paid", "shipped", "delivered", "refunded"]


def make_customers(count: int) -> list[dict[str, Any]]:
    customers = []
    for i in range(1, count + 1):
        city, country = _CITIES[i % len(_CITIES)]
        customers.append(
            {
                "id": i,
                "name": f"Customer {i}",
                "email": f"customer{i}@example.com",
                "vip": i % 7 == 0,
                "address": {"city": city, "country": country, "zip": f"{10000 + i}"},
                "created_at": (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=i)).isoformat(),
            }
        )
    return customers


def make_orders(count: int, customers: int = 20) -> list[dict[str, Any]]:
    base = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    orders = []
    for i in range(1, count + 1):
        items: list[dict[str, Any]] = []
        for n in range(1 + i % 3):
            sku, title, price = _PRODUCTS[(i + n) % len(_PRODUCTS)]
            items.append(
                {
                    "id": i * 10 + n,
                    "sku": sku,
                    "title": title,
                    "quantity": 1 + (i + n) % 4,
                    "unit_price": f"{price:.2f}",
                }
            )
        customer_id = 1 + i % customers
        city, country = _CITIES[customer_id % len(_CITIES)]
        orders.append(
            {
                "id": i,
                "number": f"#{1000 + i}",
                "status": _STATUSES[i % len(_STATUSES)],
                "total": f"{sum(float(it['unit_price']) * it['quantity'] for it in items):.2f}",
                "currency": "EUR",
                "customer": {
                    "id": customer_id,
                    "email": f"customer{customer_id}@example.com",
                    "address": {"city": city, "country": country},
                },
                "tags": ["web"] if i % 2 else ["store", "promo"],
                "line_items": items,
                "created_at": (base + timedelta(hours=i)).isoformat().replace("+00:00", "Z"),
                "updated_at": (base + timedelta(hours=i, minutes=30)).isoformat(),
            }
        )
    return orders


class SampleApi:
    """Serves the demo data; `url` is the API base (…/v1). Use as a context manager."""

    def __init__(
        self,
        orders: int = 250,
        customers: int = 20,
        token: str = DEMO_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.host = host
        self.port = port  # 0: any free port
        self.orders = make_orders(orders, customers)
        self.customers = make_customers(customers)
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "sample API not started"
        return f"http://{self.host}:{self._httpd.server_address[1]}/v1"

    def start(self) -> SampleApi:
        self._httpd = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> SampleApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path == "/v1/orders":
            offset, limit = int(params.get("offset", 0)), int(params.get("limit", 50))
            return 200, {"data": self.orders[offset : offset + limit], "total": len(self.orders)}
        if path == "/v1/customers":
            page, size = int(params.get("page", 1)), int(params.get("per_page", 10))
            start = (page - 1) * size
            return 200, {"results": self.customers[start : start + size], "page": page}
        return 404, {"error": "not found"}


def _handler_for(api: SampleApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                status, body = 401, {"error": "invalid or missing bearer token"}
            else:
                try:
                    status, body = api.answer(parts.path, params)
                except ValueError:
                    status, body = 400, {"error": "bad query parameter"}
            data = orjson.dumps(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main(argv: list[str] | None = None) -> int:
    """Serve the demo API in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m rawquery_workers.demo.sample_api", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free one)")
    parser.add_argument("--orders", type=int, default=250, help="orders it holds")
    parser.add_argument("--customers", type=int, default=20, help="customers it holds")
    args = parser.parse_args(argv)
    api = SampleApi(args.orders, args.customers, host=args.host, port=args.port)
    try:
        api.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(f"demo API at {api.url} (Authorization: Bearer {api.token}); Ctrl-C stops it", flush=True)
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
