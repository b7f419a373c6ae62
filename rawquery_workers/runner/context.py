"""Everything a step needs to work on one connection, built once per process.

The steps in `pipeline.py` take a `StreamContext`; this module is the only place that
decides which limiter, lock and auth wiring a process uses (embedded or distributed).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from rawquery_workers.auth import build_auth
from rawquery_workers.distributed.redis_keys import redis_client
from rawquery_workers.http.client import ApiClient, RetryPolicy, build_client
from rawquery_workers.http.ratelimit import NoLimit, RateLimiter, local_limiter
from rawquery_workers.http.redact import Redactor
from rawquery_workers.observe import metrics
from rawquery_workers.registry import Registry, open_registry
from rawquery_workers.runner.progress import ProgressHook
from rawquery_workers.runner.staging import Staging
from rawquery_workers.settings import Settings, get_settings
from rawquery_workers.sink import IcebergSink, open_sink
from rawquery_workers.spec.credentials import Credentials
from rawquery_workers.spec.loading import parse_spec
from rawquery_workers.spec.models import Spec, Stream


@dataclass
class StreamContext:
    connection: str
    spec: Spec
    stream: Stream
    settings: Settings
    sink: IcebergSink
    api: ApiClient
    auth: httpx.Auth | None
    staging: Staging
    registry: Registry
    on_progress: ProgressHook | None = None


class ConnectionContext:
    """One connection's spec, credentials, HTTP client, auth and limiter in this process."""

    def __init__(
        self,
        name: str,
        *,
        registry: Registry | None = None,
        settings: Settings | None = None,
        on_progress: ProgressHook | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        """`spec`: the one a sync was planned with (default: the connection's current one)."""
        self.name = name
        self.settings = settings or get_settings()
        self.registry = registry or open_registry(self.settings)
        record = self.registry.get_connection(name)
        self.updated_at = record.updated_at
        self.spec = parse_spec(spec or record.spec, source=f"connection '{name}'")
        self.credentials = self.registry.get_credentials(name)
        self.on_progress = on_progress
        self.sink = open_sink(self.settings)
        self.staging = Staging.of(self.settings)
        self.client = build_client()
        self.redactor = Redactor.for_auth(self.spec.auth, self.credentials)
        self.auth = build_auth(
            self.spec.auth,
            self.credentials,
            base_url=self.spec.base_url,
            on_credentials=self._save_credentials,
            refresh_lock=self._refresh_lock,
            reload=lambda: self.registry.get_credentials(name),
            token_client=self.client,
            redactor=self.redactor,  # learns tokens and extracted names as they are issued
        )
        self.limiter = self._limiter()  # one budget for all the connection's streams
        # `concurrency` bounds the connection's requests in flight in this process; at 1
        # each stream sends one at a time, as ever (its streams still run side by side).
        limit = self.spec.in_flight
        self.in_flight = threading.BoundedSemaphore(limit) if limit > 1 else None
        self.policy = RetryPolicy.from_spec(self.spec.retry)

    def stream(self, name: str, on_progress: ProgressHook | None = None) -> StreamContext:
        """What one stream's steps need. Its events (pages, and its requests tagged with the
        stream's name) are counted (observe/metrics.py), then go to `on_progress` if given,
        else to the connection's hook."""
        hook = metrics.counting(self.name, on_progress or self.on_progress)
        return StreamContext(
            connection=self.name,
            spec=self.spec,
            stream=self.spec.stream(name),
            settings=self.settings,
            sink=self.sink,
            api=self._api(name, hook),
            auth=self.auth,
            staging=self.staging,
            registry=self.registry,
            on_progress=hook,
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ConnectionContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- wiring -------------------------------------------------------------------------

    def _save_credentials(self, creds: Credentials) -> None:
        # OAuth2 rotation: persist (encrypted) before the new token is ever used.
        self.credentials = self.credentials.merged_with(creds)
        self.redactor.add_secrets(*creds.secrets())
        self.registry.save_credentials(self.name, self.credentials)

    @contextlib.contextmanager
    def _refresh_lock(self) -> Iterator[None]:
        if self.settings.redis_url:
            from rawquery_workers.distributed.redis_keys import oauth_lock_key
            from rawquery_workers.runner.locks import single_flight

            with single_flight(redis_client(self.settings), oauth_lock_key(self.name), ttl=60):
                yield
        else:
            yield

    def _limiter(self) -> RateLimiter:
        limits = self.spec.retry
        if limits.requests_per_second is None:
            return NoLimit()
        # One request of headroom below the API's own bucket: an API enforcing exactly
        # `rate` with the same burst sees requests a few ms early or late (network jitter),
        # and with no slack a perfectly paced stream would still draw the odd 429.
        rate, burst = limits.requests_per_second, max(1, limits.effective_burst - 1)
        if self.settings.redis_url:
            from rawquery_workers.distributed.ratelimit_redis import RedisTokenBucket

            return RedisTokenBucket(redis_client(self.settings), rate, burst)
        return local_limiter(self.name, rate, burst)

    def _api(self, stream: str, hook: ProgressHook) -> ApiClient:
        """A stream's API client: the connection's HTTP pool, auth, limiter and retry policy
        (cheap to build: no I/O), with its `request`/`retry` events tagged with the stream."""

        def on_event(event: dict[str, Any]) -> None:
            hook({**event, "stream": stream})

        return ApiClient(
            self.client,
            self.spec.base_url,
            self.auth,
            self.limiter,
            limiter_key=self.name,
            policy=self.policy,
            redactor=self.redactor,
            on_event=on_event,
            allow_private_targets=self.settings.allow_private_targets,
            in_flight=self.in_flight,
        )
