"""Shopify Admin REST API: `GET /admin/api/2024-10/orders.json` (shopify.dev/docs/api/
admin-rest/usage/pagination, /admin-rest/2024-10/resources/order#get-orders,
/api/usage/authentication, /api/usage/rate-limits).

Followed from the docs:
- cursor pagination through the `Link` header: `<https://{shop}/admin/api/2024-10/
  orders.json?limit=250&page_info=...>; rel="next"` (and `rel="previous"`); no Link header
  when everything fits on one page; the URL carries only `limit` and `page_info`;
- `page_info` "can't be modified and must be used exactly as it appears": a request with
  `page_info` may only add `limit` and `fields`; any other parameter (a filter such as
  `status` or `updated_at_min`, or `order`) is a 400; a forged `page_info` is a 400
  `{"errors": {"page_info": "Invalid value."}}`;
- `limit` default 50, at most 250;
- orders: `status` (`open` default, `closed`, `cancelled`, `any`), `updated_at_min` /
  `updated_at_max` / `created_at_min` (ISO 8601, inclusive), `order` (`updated_at asc`
  ...), `since_id`; timestamps carry the shop's offset (`2024-01-10T11:00:00-05:00`);
  prices are strings; `line_items` nested in each order;
- the token goes in `X-Shopify-Access-Token`; a wrong one is 401 `{"errors": "[API]
  Invalid API key or access token (unrecognized login or wrong password)"}`;
- answers carry `X-Shopify-Shop-Api-Call-Limit: n/40` (leaky bucket).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.services import ServiceFake, b64_json, from_b64_json, parse_iso

VERSION = "2024-10"
ORDERS_PATH = f"/admin/api/{VERSION}/orders.json"
SHOP_TZ = timezone(timedelta(hours=-5))
FILTERS = {
    "status",
    "financial_status",
    "fulfillment_status",
    "updated_at_min",
    "updated_at_max",
    "created_at_min",
    "created_at_max",
    "since_id",
    "ids",
    "order",
    "processed_at_min",
    "processed_at_max",
    "attribution_app_id",
}
ORDERINGS = {"created_at", "updated_at", "processed_at", "id"}
PRODUCTS = [
    (632910392, 808950810, "IPOD2008PINK", "IPod Nano - 8GB", "199.00"),
    (632910393, 808950811, "IPOD2008GREEN", "IPod Nano - 8GB", "199.00"),
    (921728736, 457924702, "IPODTOUCH", "IPod Touch 8GB", "229.00"),
    (632910394, 39072856, "SHIRT-L", "Shirt", "19.99"),
    (632910395, 49148385, "CASE-1", "Protective case", "9.50"),
]


def shop_time(moment: datetime) -> str:
    return moment.astimezone(SHOP_TZ).isoformat(timespec="seconds")


class Shopify(ServiceFake):
    prefix = "/admin/"

    def __init__(
        self,
        server: ApiServer,
        token: str = "shpat_fake0123456789abcdef0123456789",
        orders: int = 320,
        seed: int = 19,
    ) -> None:
        super().__init__(server, seed=seed, start=datetime(2024, 1, 10, 16, 0, tzinfo=UTC))
        self.token = token
        self.orders: list[dict[str, Any]] = []
        self.next_id = 450789469
        self.next_item = 466157049
        for _ in range(orders):
            self.add_order()
        server.route(ORDERS_PATH, self._orders)

    # --- data -----------------------------------------------------------------------------

    def _line_items(self) -> list[dict[str, Any]]:
        items = []
        for product_id, variant_id, sku, title, price in self.random.sample(
            PRODUCTS, self.random.randint(1, 3)
        ):
            self.next_item += self.random.randint(1, 9000)
            items.append(
                {
                    "id": self.next_item,
                    "product_id": product_id,
                    "variant_id": variant_id,
                    "sku": sku,
                    "title": title,
                    "quantity": self.random.randint(1, 4),
                    "price": price,
                    "taxable": True,
                    "fulfillment_status": None,
                }
            )
        return items

    def _totals(self, order: dict[str, Any]) -> None:
        subtotal = sum(float(i["price"]) * i["quantity"] for i in order["line_items"])
        tax = round(subtotal * 0.08, 2)
        order["subtotal_price"] = f"{subtotal:.2f}"
        order["total_tax"] = f"{tax:.2f}"
        order["total_price"] = f"{subtotal + tax:.2f}"

    def add_order(self) -> dict[str, Any]:
        rng = self.random
        self.next_id += rng.randint(1, 5000)
        number = 1000 + len(self.orders) + 1
        created = self.tick(rng.randint(60, 9000))
        cancelled = rng.random() < 0.08
        customer_id = 207119551 + rng.randint(0, 60)
        order: dict[str, Any] = {
            "id": self.next_id,
            "admin_graphql_api_id": f"gid://shopify/Order/{self.next_id}",
            "name": f"#{number}",
            "order_number": number,
            "email": f"buyer{customer_id}@example.com",
            "financial_status": rng.choice(["paid", "paid", "pending", "refunded"]),
            "fulfillment_status": rng.choice([None, "fulfilled"]),
            "currency": "USD",
            "created_at": shop_time(created),
            "updated_at": shop_time(created + timedelta(seconds=rng.randint(0, 600))),
            "cancelled_at": shop_time(created + timedelta(hours=1)) if cancelled else None,
            "closed_at": None,
            "customer": {
                "id": customer_id,
                "email": f"buyer{customer_id}@example.com",
                "first_name": "Buyer",
                "last_name": str(customer_id),
            },
            "shipping_address": {
                "city": "Ottawa",
                "country": "Canada",
                "country_code": rng.choice(["CA", "US", "FR"]),
                "zip": "K2P 1L4",
            },
            "line_items": self._line_items(),
        }
        self._totals(order)
        self.orders.append(order)
        return order

    def latest_update(self) -> datetime:
        return max(_moment(o["updated_at"]) for o in self.orders)

    def mutate(self) -> None:
        """Orders are edited (a line item removed or the status changed, so `updated_at`
        moves on), orders are closed, new orders come in."""
        self.now = max(self.now, self.latest_update()) + timedelta(hours=3)
        for n, order in enumerate(self.random.sample(self.orders, 40)):
            if n % 2 and len(order["line_items"]) > 1:
                order["line_items"] = order["line_items"][1:]
            else:
                order["fulfillment_status"] = "fulfilled"
                order["financial_status"] = "refunded"
            self._totals(order)
            order["updated_at"] = shop_time(self.tick(self.random.randint(5, 200)))
        for _ in range(30):
            self.add_order()

    # --- the API --------------------------------------------------------------------------

    def _reply(self, body: Any, status: int = 200, **headers: str) -> Reply:
        call_limit = f"{min(40, 1 + len(self.requests()) % 40)}/40"
        return Reply(
            body,
            status,
            headers={
                "X-Shopify-Shop-Api-Call-Limit": call_limit,
                "X-Shopify-API-Version": VERSION,
                **headers,
            },
        )

    def _orders(self, request: RecordedRequest) -> Reply:
        if request.header("x-shopify-access-token") != self.token:
            return self._reply(
                {
                    "errors": "[API] Invalid API key or access token (unrecognized login or "
                    "wrong password)"
                },
                401,
            )
        params = request.params
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            return self._reply({"errors": {"limit": "Invalid value."}}, 400)
        if not 1 <= limit <= 250:
            return self._reply({"errors": {"limit": "must be between 1 and 250"}}, 400)
        if "page_info" in params:
            extra = sorted(set(params) - {"page_info", "limit", "fields"})
            if extra:
                return self._reply(
                    {
                        "errors": {
                            name: f"{name} cannot be passed with page_info." for name in extra
                        }
                    },
                    400,
                )
            state = from_b64_json(params["page_info"])
            if not isinstance(state, dict) or "filters" not in state or "after" not in state:
                return self._reply({"errors": {"page_info": "Invalid value."}}, 400)
            filters, after = state["filters"], int(state["after"])
        else:
            unknown = sorted(set(params) - FILTERS - {"limit", "fields"})
            if unknown:
                return self._reply({"errors": {unknown[0]: "is not a valid parameter"}}, 400)
            filters, after = {k: v for k, v in params.items() if k in FILTERS}, 0
        try:
            found = self._select(filters)
        except ValueError as exc:
            return self._reply({"errors": {str(exc): "Invalid value."}}, 400)
        page = found[after : after + limit]
        end = after + len(page)
        links = []
        base = f"{self.server.url}{ORDERS_PATH}"
        if after > 0:
            token = b64_json({"filters": filters, "after": max(0, after - limit)})
            links.append(f'<{base}?limit={limit}&page_info={token}>; rel="previous"')
        if end < len(found):
            token = b64_json({"filters": filters, "after": end})
            links.append(f'<{base}?limit={limit}&page_info={token}>; rel="next"')
        headers = {"Link": ", ".join(links)} if links else {}
        return self._reply({"orders": page}, **headers)

    def _select(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        status = filters.get("status", "open")
        if status not in ("open", "closed", "cancelled", "any"):
            raise ValueError("status")
        found = [o for o in self.orders if _status_matches(o, status)]
        for name, field, keep in (
            ("updated_at_min", "updated_at", lambda a, b: a >= b),
            ("updated_at_max", "updated_at", lambda a, b: a <= b),
            ("created_at_min", "created_at", lambda a, b: a >= b),
            ("created_at_max", "created_at", lambda a, b: a <= b),
        ):
            if name in filters:
                bound = parse_iso(filters[name])
                if bound is None:
                    raise ValueError(name)
                found = [o for o in found if keep(_moment(o[field]), bound)]
        if "since_id" in filters:
            found = [o for o in found if o["id"] > int(filters["since_id"])]
        field, _, direction = filters.get("order", "created_at desc").partition(" ")
        if field not in ORDERINGS or direction.lower() not in ("asc", "desc", ""):
            raise ValueError("order")
        found.sort(
            key=lambda o: (_moment(o[field]) if field != "id" else o["id"], o["id"]),
            reverse=direction.lower() == "desc",
        )
        return found


def _status_matches(order: dict[str, Any], status: str) -> bool:
    cancelled = order["cancelled_at"] is not None
    closed = order["closed_at"] is not None
    return {
        "any": True,
        "cancelled": cancelled,
        "closed": closed,
        "open": not cancelled and not closed,
    }[status]


def _moment(text: str) -> datetime:
    moment = parse_iso(text)
    assert moment is not None, text
    return moment
