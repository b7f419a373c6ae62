"""Small helpers shared by the rate-limit, HTTP-client and extraction tests (no mocking of
httpx: requests go to tests/support/api_server.py)."""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass, field

import httpx

from rawquery_workers.http.client import ApiClient, Event, RetryPolicy
from rawquery_workers.http.ratelimit import NoLimit, RateLimiter
from rawquery_workers.http.redact import Redactor
from rawquery_workers.spec.models import RateLimit
from tests.support.api_server import Handler, RecordedRequest, Reply

SECRET = "s3cr3t-t0ken-value"


class BearerTestAuth(httpx.Auth):
    """`Authorization: Bearer <token>`, the simplest real httpx.Auth."""

    def __init__(self, token: str = SECRET) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class QueryKeyTestAuth(httpx.Auth):
    """`?api_key=<token>` added to the URL."""

    def __init__(self, token: str = SECRET, param: str = "api_key") -> None:
        self.token, self.param = token, param

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.url = request.url.copy_merge_params({self.param: self.token})
        yield request


class FakeClock:
    """A monotonic clock whose `sleep` advances it instantly (and records the request)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Recorder:
    """Collects the client's backoff sleeps and progress events instead of sleeping."""

    sleeps: list[float] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def on_event(self, event: Event) -> None:
        self.events.append(event)


def make_api(
    client: httpx.Client,
    base_url: str,
    *,
    auth: httpx.Auth | None = None,
    rate_limit: RateLimit | None = None,
    limiter: RateLimiter | None = None,
    secrets: tuple[str, ...] = (SECRET,),
    random: float = 0.5,
    allow_private_targets: bool = False,
) -> tuple[ApiClient, Recorder]:
    recorder = Recorder()
    policy = RetryPolicy.from_spec(rate_limit or RateLimit(), random=lambda: random)
    api = ApiClient(
        client,
        base_url,
        auth,
        limiter or NoLimit(),
        "conn",
        policy,
        Redactor(secrets, ["api_key"]),
        sleep=recorder.sleep,
        on_event=recorder.on_event,
        allow_private_targets=allow_private_targets,
    )
    return api, recorder


def sequence(*replies: Reply) -> Handler:
    """A handler answering with `replies` in order, then repeating the last one."""
    remaining = list(replies)
    lock = threading.Lock()

    def handler(request: RecordedRequest) -> Reply:
        with lock:
            return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return handler
