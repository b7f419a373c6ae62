"""Stripe: `GET /v1/customers` and `GET /v1/charges` (docs.stripe.com/api/pagination,
/api/customers/list, /api/charges/list, /api/expanding_objects, /api/errors).

Followed from the docs:
- list envelope `{"object": "list", "url": "/v1/customers", "has_more": bool, "data": [...]}`;
  objects in reverse chronological order (newest `created` first);
- `limit` between 1 and 100 (default 10); anything else is a 400;
- `starting_after` / `ending_before` take an object id of the list (mutually exclusive);
  an unknown id is a 400 (`resource_missing`, param `starting_after`);
- `created` filters: `created[gte|gt|lte|lt]` (or `created=N`) take a Unix timestamp in
  seconds: a value that is not an integer (ISO text) is a 400 with `param: "created[gte]"`
  and the message `Invalid integer: ...`;
- `expand[]=data.default_source` (repeated key, `data.` prefix on lists) replaces the id by
  the object; an unknown path is a 400 `This property cannot be expanded (...)`;
- unknown parameters are a 400 `Received unknown parameter: ...`;
- errors: `{"error": {"type": "invalid_request_error", "message", "param", "code"}}`;
  a bad key is a 401; `Stripe-Version` must be a known version (400 otherwise) and is
  echoed in the `Stripe-Version` response header; `Request-Id` on every answer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.services import ServiceFake, random_id

VERSIONS = ("2023-10-16", "2024-04-10", "2024-06-20", "2024-09-30.acacia")
DEFAULT_VERSION = "2024-06-20"
_CREATED = ("created", "created[gte]", "created[gt]", "created[lte]", "created[lt]")
_COMMON = {"limit", "starting_after", "ending_before", "expand[]", *_CREATED}
KNOWN_PARAMS = {
    "/v1/customers": _COMMON | {"email", "test_clock"},
    "/v1/charges": _COMMON | {"customer", "payment_intent", "transfer_group"},
}
EXPANDABLE = {
    "/v1/customers": {"data.default_source", "data.invoice_settings.default_payment_method"},
    "/v1/charges": {"data.customer", "data.balance_transaction"},
}
COUNTRIES = ["US", "FR", "DE", "GB", "JP", None]


class Stripe(ServiceFake):
    prefix = "/v1/"

    def __init__(
        self,
        server: ApiServer,
        token: str = "sk_test_51FakeKey4eC39HqLyjWDarjtT1zdp7dc",
        customers: int = 260,
        charges: int = 240,
        seed: int = 7,
    ) -> None:
        super().__init__(server, seed=seed, start=datetime(2024, 1, 1, tzinfo=UTC))
        self.token = token
        self.customers: list[dict[str, Any]] = []  # creation order (oldest first)
        self.charges: list[dict[str, Any]] = []
        self.cards: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        for _ in range(customers):
            self.add_customer()
        for _ in range(charges):
            self.add_charge()
        server.route("/v1/customers", lambda r: self._list(r, "/v1/customers", self.customers))
        server.route("/v1/charges", lambda r: self._list(r, "/v1/charges", self.charges))

    # --- data -----------------------------------------------------------------------------

    def _created(self) -> int:
        # several objects may share one second, as on the real API
        return int(self.tick(self.random.choice([0, 0, 1, 7, 60, 3600])).timestamp())

    def add_customer(self) -> dict[str, Any]:
        rng = self.random
        cid = "cus_" + random_id(rng, 14)
        card = None
        if rng.random() < 0.6:
            card = "card_" + random_id(rng, 24)
            self.cards[card] = {
                "id": card,
                "object": "card",
                "brand": rng.choice(["Visa", "MasterCard", "American Express"]),
                "country": "US",
                "customer": cid,
                "exp_month": rng.randint(1, 12),
                "exp_year": rng.randint(2026, 2031),
                "funding": "credit",
                "last4": f"{rng.randint(0, 9999):04d}",
            }
        pm = None
        if rng.random() < 0.4:
            pm = "pm_" + random_id(rng, 24)
            self.payment_methods[pm] = {
                "id": pm,
                "object": "payment_method",
                "type": "card",
                "customer": cid,
            }
        country = rng.choice(COUNTRIES)
        n = len(self.customers) + 1
        customer = {
            "id": cid,
            "object": "customer",
            "address": None
            if country is None
            else {
                "city": f"City {n}",
                "country": country,
                "line1": f"{n} Main Street",
                "line2": None,
                "postal_code": f"{10000 + n}",
                "state": None,
            },
            "balance": rng.choice([0, 0, 0, -500, 1250]),
            "created": self._created(),
            "currency": rng.choice(["usd", "eur", None]),
            "default_source": card,
            "delinquent": rng.random() < 0.1,
            "description": None,
            "email": f"customer{n}@example.com",
            "invoice_prefix": random_id(rng, 8, "ABCDEF0123456789"),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": pm,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": {"plan": rng.choice(["free", "pro"])} if rng.random() < 0.5 else {},
            "name": f"Customer {n}",
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self.customers.append(customer)
        return customer

    def add_charge(self) -> dict[str, Any]:
        rng = self.random
        amount = rng.randint(50, 50000)
        refunded = rng.random() < 0.1
        charge = {
            "id": "ch_" + random_id(rng, 24),
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": amount if refunded else 0,
            "balance_transaction": "txn_" + random_id(rng, 24),
            "created": self._created(),
            "currency": "usd",
            "customer": rng.choice(self.customers)["id"] if self.customers else None,
            "description": None,
            "livemode": False,
            "metadata": {},
            "paid": True,
            "refunded": refunded,
            "status": rng.choice(["succeeded", "succeeded", "succeeded", "failed"]),
        }
        self.charges.append(charge)
        return charge

    def mutate(self, new_customers: int = 30, new_charges: int = 25) -> None:
        """New customers and charges (Stripe's `created` never changes, so a `created`
        cursor picks up additions only: that is the API's own limit)."""
        # one new customer in the very second of the newest one (the `created[gte]` boundary)
        tie = self.add_customer()
        tie["created"] = self.customers[-2]["created"]
        self.tick(86400)
        for _ in range(new_customers - 1):
            self.add_customer()
        for _ in range(new_charges):
            self.add_charge()

    # --- the API --------------------------------------------------------------------------

    def _error(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> Reply:
        error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
        if param is not None:
            error["param"] = param
        if code is not None:
            error["code"] = code
        return Reply({"error": error}, status, headers=self._headers())

    def _headers(self, version: str = DEFAULT_VERSION) -> dict[str, str | list[str]]:
        return {"Request-Id": "req_" + random_id(self.random, 14), "Stripe-Version": version}

    def _authorized(self, request: RecordedRequest) -> bool:
        auth = request.header("authorization") or ""
        return auth == f"Bearer {self.token}"

    def _list(self, request: RecordedRequest, path: str, objects: list[dict[str, Any]]) -> Reply:
        if not self._authorized(request):
            shown = (request.header("authorization") or "")[-4:]
            return self._error(401, f"Invalid API Key provided: sk_test_****{shown}")
        version = request.header("stripe-version") or DEFAULT_VERSION
        if version not in VERSIONS:
            return self._error(400, f"Invalid Stripe API version: {version}")
        for name in request.query:
            if name not in KNOWN_PARAMS[path]:
                return self._error(400, f"Received unknown parameter: {name}", name)
            if name != "expand[]" and len(request.query[name]) > 1:
                return self._error(400, f"Invalid {name}: must be a single value", name)
        params = request.params
        try:
            limit = int(params.get("limit", "10"))
        except ValueError:
            return self._error(400, f"Invalid integer: {params['limit']}", "limit")
        if not 1 <= limit <= 100:
            return self._error(400, "Invalid limit: must be between 1 and 100", "limit")
        bounds: dict[str, int] = {}
        for name in _CREATED:
            if name in params:
                if not re.fullmatch(r"\d+", params[name]):
                    code = "parameter_invalid_integer"
                    return self._error(400, f"Invalid integer: {params[name]}", name, code)
                bounds[name] = int(params[name])
        expand = request.query.get("expand[]", [])
        for item in expand:
            if item not in EXPANDABLE[path]:
                hint = f" You may want to try expanding 'data.{item}' instead." * (
                    f"data.{item}" in EXPANDABLE[path]
                )
                return self._error(400, f"This property cannot be expanded ({item}).{hint}")
        if "starting_after" in params and "ending_before" in params:
            return self._error(
                400,
                "Received both starting_after and ending_before parameters. Please pass "
                "in only one.",
            )
        newest_first = [o for o in reversed(objects) if _within(o["created"], bounds)]
        newest_first = [o for o in newest_first if _matches(o, params)]
        ids = [o["id"] for o in newest_first]
        if after := params.get("starting_after"):
            if after not in ids:
                return self._error(
                    400, f"No such object: '{after}'", "starting_after", "resource_missing"
                )
            start = ids.index(after) + 1
            page = newest_first[start : start + limit]
            more = start + limit < len(newest_first)
        elif before := params.get("ending_before"):
            if before not in ids:
                return self._error(
                    400, f"No such object: '{before}'", "ending_before", "resource_missing"
                )
            end = ids.index(before)
            page = newest_first[max(0, end - limit) : end]
            more = end - limit > 0
        else:
            page, more = newest_first[:limit], limit < len(newest_first)
        data = [self._expanded(o, expand) for o in page]
        body = {"object": "list", "data": data, "has_more": more, "url": path}
        return Reply(body, headers=self._headers(version))

    def _expanded(self, obj: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        out = dict(obj)
        if "data.default_source" in expand and out.get("default_source"):
            out["default_source"] = self.cards[out["default_source"]]
        if "data.invoice_settings.default_payment_method" in expand:
            settings = dict(out["invoice_settings"])
            if settings["default_payment_method"]:
                settings["default_payment_method"] = self.payment_methods[
                    settings["default_payment_method"]
                ]
            out["invoice_settings"] = settings
        if "data.customer" in expand and out.get("customer"):
            out["customer"] = next(c for c in self.customers if c["id"] == out["customer"])
        if "data.balance_transaction" in expand and out.get("balance_transaction"):
            out["balance_transaction"] = {
                "id": out["balance_transaction"],
                "object": "balance_transaction",
                "amount": out["amount"],
            }
        return out

    # --- what the tests ask ---------------------------------------------------------------

    def list_requests(self, path: str = "/v1/customers") -> list[RecordedRequest]:
        return self.requests(path)


def _within(created: int, bounds: dict[str, int]) -> bool:
    checks = {
        "created": lambda v: created == v,
        "created[gte]": lambda v: created >= v,
        "created[gt]": lambda v: created > v,
        "created[lte]": lambda v: created <= v,
        "created[lt]": lambda v: created < v,
    }
    return all(checks[name](value) for name, value in bounds.items())


def _matches(obj: dict[str, Any], params: dict[str, str]) -> bool:
    return all(obj.get(name) == params[name] for name in ("email", "customer") if name in params)
