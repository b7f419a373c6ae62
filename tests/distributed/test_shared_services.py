"""Services shared by workers: single-flight OAuth2 refresh, the rate limiter, and a Redis
restart in the middle of a sync."""

from __future__ import annotations

import itertools
import threading
import time
from urllib.parse import parse_qs

import pytest

from rawquery_workers.registry import open_registry
from rawquery_workers.spec.credentials import Credentials
from tests.distributed.conftest import Dist, Shop, Workers, table_ids
from tests.support.api_server import RecordedRequest, Reply
from tests.support.polling import wait_for

pytestmark = [pytest.mark.distributed, pytest.mark.redis]


class RotatingProvider:
    """Each refresh token is valid once; each exchange issues a new one."""

    def __init__(self, expires_in: int) -> None:
        self.expires_in = expires_in
        self.refresh_token = "rt-0"
        self.access: dict[str, float] = {}
        self.grants: list[int] = []  # HTTP status of every token request
        self._n = itertools.count(1)
        self._lock = threading.Lock()

    def token(self, request: RecordedRequest) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        with self._lock:
            if form.get("refresh_token") != self.refresh_token:
                self.grants.append(400)
                return Reply({"error": "invalid_grant"}, 400)
            n = next(self._n)
            self.refresh_token = f"rt-{n}"
            self.access[f"at-{n}"] = time.monotonic() + self.expires_in
            self.grants.append(200)
            body = {"access_token": f"at-{n}", "refresh_token": self.refresh_token}
            return Reply({**body, "expires_in": self.expires_in})

    def check(self, request: RecordedRequest, offset: int) -> Reply | None:
        token = (request.header("authorization") or "").removeprefix("Bearer ")
        if self.access.get(token, 0) < time.monotonic():
            return Reply({"error": "expired"}, 401)
        time.sleep(0.1)  # a slowish API, so both streams are in flight together
        return None


def _oauth_connection(dist: Dist, shop: Shop, provider: RotatingProvider) -> None:
    shop.add("orders", 60)
    shop.add("customers", 60)
    shop.hooks["orders"] = shop.hooks["customers"] = provider.check
    shop.bearer = False
    shop.server.route("/token", provider.token, methods=("POST",))
    spec = shop.spec(auth={"type": "oauth2", "token_url": f"{shop.server.url}/token"})
    creds = Credentials(client_id="cid", client_secret="csecret", refresh_token="rt-0")
    open_registry().create_connection("oauth", spec, creds, None)


def test_oauth_refresh_is_single_flight_one_token_request_per_sync(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    provider = RotatingProvider(expires_in=3600)
    _oauth_connection(dist, shop, provider)
    workers.start(2)

    for expected in (1, 2):
        done = dist.rq("connections", "sync", "oauth")
        assert done.returncode == 0, done.stdout + done.stderr
        assert provider.grants == [200] * expected
    assert table_ids("oauth", "orders") == list(range(1, 61))
    assert open_registry().get_credentials("oauth").refresh_token == provider.refresh_token


def test_oauth_tokens_expiring_mid_sync_are_refreshed_once_each(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    provider = RotatingProvider(expires_in=62)  # usable for ~2 s (60 s safety margin)
    _oauth_connection(dist, shop, provider)
    workers.start(2)

    started = time.monotonic()
    done = dist.rq("connections", "sync", "oauth")

    assert done.returncode == 0, done.stdout + done.stderr
    assert 400 not in provider.grants, "a refresh token was spent twice (invalid_grant)"
    expiries = (time.monotonic() - started) / 2.0
    print(f"oauth expiry: {len(provider.grants)} token requests over {expiries * 2:.1f}s")
    assert 1 <= len(provider.grants) <= expiries + 2
    # Requests to the API that span more than one token lifetime need a second token.
    data = [r.at for r in shop.server.requests if r.path != "/token"]
    if data[-1] - data[0] > 2.5:
        assert len(provider.grants) >= 2
    assert table_ids("oauth", "customers") == list(range(1, 61))


def test_rate_limit_is_shared_by_all_workers_and_streams(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    for name in ("a", "b", "c"):
        shop.add(name, 100)
    dist.connect("limited", shop.spec(rate_limit={"requests_per_second": 5}))
    workers.start(2)

    done = dist.rq("connections", "sync", "limited")

    assert done.returncode == 0, done.stdout + done.stderr
    times = sorted(r.at for r in shop.server.requests)
    assert len(times) == 33
    busiest = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    assert busiest <= 5 + 5, f"{busiest} requests in one second"
    mean = len(times) / (times[-1] - times[0])
    print(f"rate limit: busiest 1 s window {busiest}, mean {mean:.2f}/s")  # for the record
    rate = (len(times) - 5) / (times[-1] - times[0])
    assert rate <= 5.5


def test_redis_restarted_mid_sync_then_the_next_sync_is_exact(
    dist: Dist, workers: Workers, shop: Shop
) -> None:
    shop.add("orders", 80)
    shop.add("customers", 80)
    committed = threading.Event()

    def slow(request: RecordedRequest, offset: int) -> Reply | None:
        if offset >= 30:
            committed.set()  # past the first segment: some data is already committed
        time.sleep(0.2)
        return None

    shop.hooks["orders"] = shop.hooks["customers"] = slow
    dist.connect("bounce", shop.spec())
    workers.start(2)
    first = dist.rq_background("connections", "sync", "bounce")

    assert committed.wait(60)
    dist.redis.restart()

    def ended() -> bool:
        workers.supervise()  # a worker killed by the restart is replaced, like systemd would
        return first.poll() is not None

    wait_for(ended, 120, "the interrupted sync to complete or fail", every=0.5)
    out, err = first.communicate()
    status = dist.status("bounce")
    print(f"redis restart: first sync exit {first.returncode}; {status}")  # for the record
    if first.returncode != 0:
        assert any(s["status"] == "failed" and s["error"] for s in status.values()), out
    workers.supervise()

    again = dist.rq("connections", "sync", "bounce")

    assert again.returncode == 0, again.stdout + again.stderr
    assert table_ids("bounce", "orders") == list(range(1, 81))
    assert table_ids("bounce", "customers") == list(range(1, 81))
