"""Fakes of real HTTP APIs, one module per service, each served by `tests/support/api_server`.

Every fake holds a ground-truth dataset (a few hundred records with timestamps), answers in
the service's documented wire format (paths, envelopes, error shapes, pagination rules,
caps and quirks, each listed in the module's docstring), records what it received
(`fake.requests()`) and can change its data between syncs (`fake.mutate()`), after which
its ground truth is the new expected table.

    with ApiServer() as server:
        stripe = Stripe(server)           # routes installed, data generated
        ...sync...
        stripe.mutate()                   # some records changed, some added
        ...sync again...
        stripe.customers                  # the ground truth
"""

from __future__ import annotations

import base64
import random
import string
from datetime import UTC, datetime, timedelta

import orjson

from tests.support.api_server import ApiServer, RecordedRequest

__all__ = [
    "ServiceFake",
    "b64_json",
    "from_b64_json",
    "parse_iso",
    "random_id",
]


class ServiceFake:
    """What the fakes share: the server, a seeded random source, a clock for timestamps,
    and the requests received on the fake's own paths."""

    prefix = "/"

    def __init__(self, server: ApiServer, *, seed: int, start: datetime) -> None:
        self.server = server
        self.random = random.Random(seed)
        self.now = start  # the service's clock: record timestamps are taken from it

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """Requests received on `path` (default: every path under the fake's prefix)."""
        if path is not None:
            return self.server.requests_to(path)
        return [r for r in list(self.server.requests) if r.path.startswith(self.prefix)]


def random_id(rng: random.Random, length: int, alphabet: str | None = None) -> str:
    chars = alphabet or string.ascii_letters + string.digits
    return "".join(rng.choice(chars) for _ in range(length))


def parse_iso(text: str) -> datetime | None:
    """An ISO 8601 date or date-time as an aware datetime (UTC when it has no offset), or
    None when it is not one. Accepts `Z`, `+hh:mm` and `+hhmm`."""
    value = text.strip()
    if len(value) >= 5 and value[-5] in "+-" and value[-4:].isdigit() and value[-6:-5] != ":":
        value = f"{value[:-2]}:{value[-2:]}"  # +0000 -> +00:00
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def b64_json(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def from_b64_json(token: str) -> object | None:
    try:
        return orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
