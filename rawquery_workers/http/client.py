"""The HTTP client of a connection: rate limit, retries with backoff, Retry-After, redirects,
the credentials-origin rule and redacted errors. One `ApiClient` per stream read.

Each attempt first takes a token from the connection's rate limiter, then sends. A status
in `retry_on`, a network failure (connect error, reset, timeout, truncated body) or a body
that is not the JSON expected (HTML with status 200, truncated, empty) is a failed attempt:
it is retried after a backoff wait, or after the server's Retry-After when
`respect_retry_after` (both capped at `max_wait`), up to `max_retries` retries after the
first attempt. Then RetriableError names the status, the attempt count and the redacted URL.
A 429, or any answer with a Retry-After, holds the connection's whole budget for that wait
(`RateLimiter.hold`): its other requests in flight, on any thread or worker, back off too.
`in_flight` (the connection's `concurrency` permits, shared by its streams) bounds the
attempts sent at once.
401/403 raise AuthError, other 4xx ResponseError with a short redacted excerpt of the body;
`error_for_status` is the one place a status becomes an error class.

Credentials rule: credentials go only to `base_url`'s origin (scheme, host and port). A
request to any other origin (a next-page URL, a Link header or a redirect pointing
elsewhere) is still sent, but WITHOUT credentials: no auth flow runs for it, headers that
carry credentials (Authorization, Cookie, X-API-Key, the spec's auth header names, any
value holding a secret) are removed, and so are the query parameters our client could have
added (the spec's auth param names, any value holding a secret). The target's own
parameters stay: a pre-signed storage URL keeps its `X-Amz-Signature`. If that API then
answers 401/403, the AuthError says so. Redirects are followed here (not by httpx) so the
rule holds for every hop.

Private-target rule (rawquery_workers/http/targets.py): a hop to another host whose address is
private, loopback or link-local, when base_url's is not of that kind, is refused before it
is sent (ResponseError naming the redacted URL and the opt-out,
RAWQUERY_ALLOW_PRIVATE_TARGETS=1).

Bounds (rawquery_workers/http/response_limits.py, applied by the transport): a request has
RAWQUERY_REQUEST_DEADLINE_SECONDS from sending to the last body byte, however the bytes
trickle in; past it the attempt failed like a timeout (retried as above). A body over
RAWQUERY_MAX_RESPONSE_BYTES, as received or decompressed, and a JSON body nested deeper
than MAX_JSON_DEPTH levels are ResponseError, not retried: the same request would get the
same body. `ApiClient.finish_by` (set by the pipeline once a segment holds a page) ends a
request in flight, or a retry's wait, at that instant with OutOfTime instead: the segment
ends before that page and the next segment asks for it again.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import json
import logging
import math
import random as _random
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Literal, cast

import httpx
import orjson
from pydantic import JsonValue

from rawquery_workers.errors import AuthError, ResponseError, RetriableError, SourceError
from rawquery_workers.http.ratelimit import RateLimiter
from rawquery_workers.http.redact import Redactor
from rawquery_workers.http.response_limits import (
    NOT_AFTER,
    SIZE_SETTING,
    BoundedTransport,
    DeadlineExceeded,
    ResponseLimits,
    ResponseTooLarge,
)
from rawquery_workers.http.targets import OPT_OUT, TargetGuard
from rawquery_workers.http.transport import StdlibTransport, send
from rawquery_workers.settings import get_settings
from rawquery_workers.spec.models import ParamValues, RateLimit
from rawquery_workers.spec.origin import Origin

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
MAX_REDIRECTS = 10
MAX_JSON_DEPTH = 1024  # orjson's limit: deeper bodies are refused (NestingTooDeep)
USER_AGENT = "rawquery-workers/0.1 (+https://rawquery.dev)"
_EXCERPT_CHARS = 200
# Every digit as "0": a run of 19 zeros in the translated body is a run of 19+ digits, found
# by a C-speed translate and substring search instead of a regex (docs/decisions/006).
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_RUN = b"0" * 19
# httpx logs every request's full URL at INFO (an api_key query parameter included) and
# httpcore its traffic at DEBUG: never below WARNING, whatever RAWQUERY_LOG_LEVEL says
# (rawquery's own request events carry the redacted URL instead).
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_READ = httpx.ByteStream(b"")
Event = dict[str, str | int | float | None]
# Failures of the connection or of the bytes on the wire: worth another attempt.
_NETWORK_ERRORS = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.DecodingError,
)


def build_client(
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    max_connections: int = 20,
    transport: httpx.BaseTransport | None = None,
    limits: ResponseLimits | None = None,
) -> httpx.Client:
    """An HTTP/1.1 keep-alive client. It accepts gzip/deflate (and br/zstd when the brotli /
    zstandard packages are installed: httpx advertises what it can decode) and does not
    follow redirects by itself (ApiClient does, applying the credentials rule). Requests
    go through `StdlibTransport` (rawquery_workers/http/transport.py: why) unless `transport`,
    or through the environment's proxy (`proxy_mounts`), under `limits` (by default
    `response_limits()`; a `transport` given is used as it is)."""
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
    limits = limits or response_limits()
    return httpx.Client(
        timeout=timeout,
        mounts=proxy_mounts(limits),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        ),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        follow_redirects=False,
        transport=transport or StdlibTransport(timeout=timeout, limits=limits),
    )


def response_limits() -> ResponseLimits:
    """The deadline and body cap of every request, from RAWQUERY_REQUEST_DEADLINE_SECONDS
    and RAWQUERY_MAX_RESPONSE_BYTES."""
    settings = get_settings()
    return ResponseLimits(settings.request_deadline_seconds, settings.max_response_bytes)


def proxy_mounts(limits: ResponseLimits | None = None) -> dict[str, httpx.BaseTransport | None]:
    """Transports for HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (or their lowercase forms), with
    the NO_PROXY hosts going direct: what httpx itself reads from the environment, except
    that it does so only for a client built without its own transport, as ours are.
    With `limits`, the proxy transports' responses are bounded by them too."""
    found = urllib.request.getproxies()
    mounts: dict[str, httpx.BaseTransport | None] = {}
    for scheme in ("http", "https", "all"):
        if url := found.get(scheme):
            proxy = url if "://" in url else f"http://{url}"
            via: httpx.BaseTransport = httpx.HTTPTransport(proxy=proxy)
            mounts[f"{scheme}://"] = via if limits is None else BoundedTransport(via, limits)
    if not mounts:
        return {}
    for host in (h.strip() for h in found.get("no", "").split(",")):
        if host == "*":
            return {}
        if host:
            mounts[_bypass_pattern(host)] = None
    return mounts


def _bypass_pattern(host: str) -> str:
    """An httpx mount pattern for one NO_PROXY entry (as httpx maps them)."""
    if "://" in host:
        return host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"all://{host}" if host.lower() == "localhost" else f"all://*{host}"
    return f"all://[{host}]" if address.version == 6 else f"all://{host}"


def join_url(base_url: str, path: str) -> str:
    """`base_url` + `path` with exactly one slash between them (`path` may be empty)."""
    if not path:
        return base_url
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def error_for_status(status: int, retry_on: Collection[int]) -> type[SourceError] | None:
    """THE mapping of an HTTP status to an error class; None for success (2xx).

    Statuses in `retry_on`, 429 and 5xx are RetriableError (only `retry_on` ones are
    retried); 401/403/407 AuthError; anything else (4xx, an unfollowed 3xx) ResponseError.
    """
    if 200 <= status < 300:
        return None
    if status in retry_on or status == 429 or status >= 500:
        return RetriableError
    if status in (401, 403, 407):
        return AuthError
    return ResponseError


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date)."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to retry and how long to wait. `random` returns a float in [0, 1)."""

    retry_on: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    max_retries: int = 5
    backoff: Literal["exponential", "linear", "constant"] = "exponential"
    base: float = 1.0
    max_wait: float = 300.0
    respect_retry_after: bool = True
    random: Callable[[], float] = field(default=_random.random, compare=False)

    @classmethod
    def from_spec(
        cls, rate_limit: RateLimit, *, random: Callable[[], float] = _random.random
    ) -> RetryPolicy:
        return cls(
            retry_on=frozenset(rate_limit.retry_on),
            max_retries=rate_limit.max_retries,
            backoff=rate_limit.backoff,
            base=rate_limit.backoff_base,
            max_wait=rate_limit.max_wait,
            respect_retry_after=rate_limit.respect_retry_after,
            random=random,
        )

    @property
    def attempts(self) -> int:
        return self.max_retries + 1

    def backoff_wait(self, retry: int) -> float:
        """The wait before retry number `retry` (0 = the first retry), without Retry-After.

        exponential: full jitter, uniform(0, min(max_wait, base * 2**retry));
        linear: base * (retry + 1); constant: base; all capped at max_wait.
        """
        if self.backoff == "exponential":
            return self.random() * min(self.max_wait, self.base * 2.0 ** min(retry, 64))
        if self.backoff == "linear":
            return min(self.max_wait, self.base * (retry + 1))
        return min(self.max_wait, self.base)

    def wait(self, retry: int, retry_after: float | None = None) -> float:
        """The wait before retry `retry`: the server's Retry-After when respected, else
        the backoff; never more than max_wait."""
        if retry_after is not None and self.respect_retry_after:
            return min(self.max_wait, retry_after)
        return self.backoff_wait(retry)


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """A successful response. `url` is the URL requested (after redirects, before auth
    added anything to it); `json` is the parsed body (None when not expected or 204)."""

    status: int
    headers: httpx.Headers
    json: JsonValue
    url: str
    redacted_url: str
    content: bytes
    attempts: int


@dataclass(slots=True)
class _Meter:
    """Time spent on one attempt: when it started, seconds waited for rate-limit tokens."""

    started: float
    waited: float = 0.0


class OutOfTime(Exception):  # a signal for the pipeline, not an error a user sees
    """`ApiClient.finish_by` came before the request could finish. The pipeline ends the
    segment before this page (the next segment sends the request again)."""


class NestingTooDeep(ValueError):
    """A JSON body nested deeper than the parser reads (`parse_json`)."""


@dataclass(frozen=True, slots=True)
class _Failure:
    """A failed attempt worth retrying."""

    reason: str
    status: int | None = None
    retry_after: float | None = None


class ApiClient:
    """Sends a stream's requests; see the module docstring for the rules it applies."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        auth: httpx.Auth | None,
        limiter: RateLimiter,
        limiter_key: str,
        policy: RetryPolicy,
        redactor: Redactor,
        sleep: Callable[[float], None] = time.sleep,
        on_event: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        allow_private_targets: bool = False,
        in_flight: threading.Semaphore | None = None,
    ) -> None:
        self.client = client
        self.base_url = base_url
        self.auth = auth
        self.limiter = limiter
        self.limiter_key = limiter_key
        self.policy = policy
        self.redactor = redactor
        self._sleep = sleep
        self._on_event = on_event
        self._clock = clock
        self._base_origin = Origin.of(base_url)
        # A time.monotonic() instant: requests, and retry waits, end there (OutOfTime).
        self.finish_by: float | None = None
        self._guard = TargetGuard(base_url, allow_private=allow_private_targets)
        self._in_flight = in_flight or contextlib.nullcontext()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, ParamValues] | None = None,
        json: JsonValue | None = None,
        expect_json: bool = True,
        headers: Mapping[str, str] | None = None,
        ignore_status: Collection[int] = (),
    ) -> ApiResponse:
        """Send with retries; `url` may be relative to base_url. Raises SourceError kinds.
        `headers` are added to the request (auth's come on top); an answer whose status is
        in `ignore_status` is returned with no body (`json` None) instead of raised."""
        method = method.upper()
        full = url if _ABSOLUTE.match(url) else join_url(self.base_url, url)
        if params and "?" not in full:  # one URL parse a request, not copy_merge_params' three
            target = httpx.URL(full, params=dict(params))
        else:
            target = httpx.URL(full)
            if params:
                target = target.copy_merge_params(dict(params))
        shown = self.redactor.redact_url(target)
        body = orjson.dumps(json) if json is not None else None
        failure = _Failure("no attempt was made")
        for attempt in range(1, self.policy.attempts + 1):
            self._in_time(method, shown, 0.0)
            with self._in_flight:
                outcome = self._attempt(
                    method, target, body, expect_json, shown, attempt, headers, ignore_status
                )
            if isinstance(outcome, ApiResponse):
                return outcome
            failure = outcome
            if attempt < self.policy.attempts:
                wait = self.policy.wait(attempt - 1, failure.retry_after)
                if wait > 0 and (failure.status == 429 or failure.retry_after is not None):
                    self.limiter.hold(self.limiter_key, wait)
                self._in_time(method, shown, wait)
                self._emit(event="retry", method=method, url=shown, attempt=attempt,
                           status=failure.status, reason=failure.reason, wait=wait)  # fmt: skip
                self._sleep(wait)
        raise self._exhausted(method, shown, failure)

    def _in_time(self, method: str, shown: str, wait: float) -> None:
        """OutOfTime when `finish_by` comes before `wait` seconds from now are over."""
        if self.finish_by is not None and time.monotonic() + wait >= self.finish_by:
            raise OutOfTime(f"{method} {shown}")

    # --- one attempt -----------------------------------------------------------------------

    def _attempt(
        self,
        method: str,
        target: httpx.URL,
        body: bytes | None,
        expect_json: bool,
        shown: str,
        attempt: int,
        headers: Mapping[str, str] | None = None,
        ignore_status: Collection[int] = (),
    ) -> ApiResponse | _Failure:
        meter = _Meter(started=self._clock())
        try:
            response, final_url, trusted = self._send(method, target, body, shown, meter, headers)
        except _NETWORK_ERRORS as exc:
            if isinstance(exc, DeadlineExceeded) and exc.caller:  # finish_by came first
                self._emit_request(method, shown, attempt, meter, None, "out of time")
                raise OutOfTime(f"{method} {shown}") from None
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "network error"
            detail = self.redactor.redact(str(exc)) or "no detail"
            failure = _Failure(f"{kind} ({type(exc).__name__}: {detail})")
            self._emit_request(method, shown, attempt, meter, None, failure.reason)
            return failure
        except ResponseTooLarge as exc:
            self._emit_request(method, shown, attempt, meter, None, str(exc))
            raise ResponseError(
                f"{method} {shown}: {exc}; not retried (the same request would get the same "
                f"body). If this API's responses really are this large, raise {SIZE_SETTING}; "
                "otherwise ask for smaller pages (pagination.page_size) or check the endpoint"
            ) from None
        except httpx.HTTPError as exc:
            detail = self.redactor.redact(str(exc))
            raise SourceError(f"{method} {shown}: {type(exc).__name__}: {detail}") from None
        self._emit_request(method, shown, attempt, meter, response.status_code)
        final_shown = shown if final_url is target else self.redactor.redact_url(final_url)
        if response.status_code in ignore_status:  # the stream reads it as an empty last page
            return ApiResponse(
                status=response.status_code,
                headers=response.headers,
                json=None,
                url=str(final_url),
                redacted_url=final_shown,
                content=b"",
                attempts=attempt,
            )
        return self._outcome(
            method, shown, response, final_url, final_shown, trusted, expect_json, attempt
        )

    def _outcome(
        self,
        method: str,
        shown: str,
        response: httpx.Response,
        final_url: httpx.URL,
        final_shown: str,
        trusted: bool,
        expect_json: bool,
        attempt: int,
    ) -> ApiResponse | _Failure:
        """The response as a success, a failure to retry, or a raised error."""
        status = response.status_code
        error = error_for_status(status, self.policy.retry_on)
        if error is not None and status in self.policy.retry_on:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            return _Failure(_status_text(response), status, retry_after)
        if error is not None:
            raise self._status_error(error, method, shown, response, trusted)
        parsed: JsonValue = None
        if expect_json and status != 204:
            try:
                parsed = parse_json(response.content)
            except NestingTooDeep as exc:
                raise ResponseError(
                    f"{method} {final_shown}: HTTP {status}: {exc}; not retried (the same "
                    "request would get the same body). Such a value cannot be stored: check "
                    "the endpoint, or ask the API for a flatter representation"
                ) from None
            except orjson.JSONDecodeError:
                return _Failure(self._not_json(response), status)
        return ApiResponse(
            status=status,
            headers=response.headers,
            json=parsed,
            url=str(final_url),
            redacted_url=final_shown,
            content=response.content,
            attempts=attempt,
        )

    def _send(
        self,
        method: str,
        url: httpx.URL,
        body: bytes | None,
        shown: str,
        meter: _Meter,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response, httpx.URL, bool]:
        """Send, following redirects; every hop takes a rate-limit token and obeys the
        credentials rule. Returns the final response, its URL and whether it was trusted."""
        for hop in range(MAX_REDIRECTS + 1):
            if reason := self._guard.refusal(url):
                raise self._refused(method, shown, url, hop, reason)
            meter.waited += self.limiter.acquire(self.limiter_key)
            trusted = Origin.of(url) == self._base_origin
            request = self._build(method, url, body, trusted, headers)
            response = send(self.client, request, self.auth if trusted else None)
            # httpx links a read response and its stream in a reference cycle; unlinked,
            # the body is freed as soon as the page is parsed, not at the next collection
            response.stream = _READ
            if not response.is_redirect:
                return response, url, trusted
            url = url.join(response.headers["location"])
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method == "POST"
            ):
                method, body = "GET", None
        raise ResponseError(f"{method} {shown}: more than {MAX_REDIRECTS} redirects")

    def _build(
        self,
        method: str,
        url: httpx.URL,
        body: bytes | None,
        trusted: bool,
        fixed: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        if not trusted:
            url = httpx.URL(self.redactor.strip_params(str(url)))
        headers = dict(fixed or {})
        if body is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        until = {NOT_AFTER: self.finish_by} if self.finish_by is not None else None
        request = self.client.build_request(
            method, url, content=body, headers=headers, extensions=until
        )
        if not trusted:
            for name, value in list(request.headers.items()):
                if self.redactor.is_sensitive_header(name, value):
                    del request.headers[name]
        return request

    # --- messages --------------------------------------------------------------------------

    def _not_json(self, response: httpx.Response) -> str:
        kind = response.headers.get("content-type") or "no content type"
        if not response.content.strip():
            return f"HTTP {response.status_code} with an empty body where JSON was expected"
        return (
            f"HTTP {response.status_code} with a body that is not valid JSON ({kind}, "
            f"{len(response.content)} bytes, starting {self._excerpt(response)!r})"
        )

    def _excerpt(self, response: httpx.Response) -> str:
        text = " ".join(response.content[: _EXCERPT_CHARS * 4].decode("utf-8", "replace").split())
        if len(text) > _EXCERPT_CHARS:
            text = text[:_EXCERPT_CHARS] + "…"
        return self.redactor.redact(text)

    def _status_error(
        self,
        error: type[SourceError],
        method: str,
        shown: str,
        response: httpx.Response,
        trusted: bool,
    ) -> SourceError:
        what = f"{method} {shown}: {_status_text(response)}"
        said = f"The API said: {self._excerpt(response) or '(empty body)'}"
        if error is AuthError:
            hint = (
                "the API refused the credentials; check them (rq connections update with new "
                "credential flags) and that they grant access to this endpoint"
                if trusted
                else "no credentials were sent because this URL is not on base_url's origin "
                "(credentials only go to base_url's scheme, host and port)"
            )
            return AuthError(f"{what}; {hint}. {said}")
        if error is RetriableError:
            return RetriableError(
                f"{what} (not retried: {response.status_code} is not in rate_limit.retry_on). "
                f"{said}",
                status=response.status_code,
            )
        return error(f"{what}. {said}. Check the stream's endpoint, params and pagination")

    def _refused(
        self, method: str, shown: str, url: httpx.URL, hop: int, reason: str
    ) -> ResponseError:
        where = f"{method} {shown}" + (
            f" redirected to {self.redactor.redact_url(url)}" if hop else ""
        )
        return ResponseError(
            f"{where}: not sent: {reason}. Next-page URLs, Link headers and redirects are not "
            "followed to private, loopback or link-local addresses from a public base_url, "
            f"nor to link-local ones from any base_url; if this API is trusted to, set {OPT_OUT}"
        )

    def _exhausted(self, method: str, shown: str, failure: _Failure) -> RetriableError:
        attempts = self.policy.attempts
        noun = "attempt" if attempts == 1 else "attempts"
        return RetriableError(
            f"{method} {shown} failed after {attempts} {noun}: {failure.reason}. The API kept "
            f"failing; try again later or raise rate_limit.max_retries (now "
            f"{self.policy.max_retries})",
            status=failure.status,
            retry_after=failure.retry_after,
        )

    def _emit_request(
        self,
        method: str,
        shown: str,
        attempt: int,
        meter: _Meter,
        status: int | None,
        reason: str | None = None,
    ) -> None:
        seconds = self._clock() - meter.started
        self._emit(event="request", method=method, url=shown, status=status, attempt=attempt,
                   seconds=seconds, rate_limit_wait=meter.waited, reason=reason)  # fmt: skip

    def _emit(self, **event: str | int | float | None) -> None:
        if self._on_event is not None:
            self._on_event(event)


def parse_json(content: bytes) -> JsonValue:
    """A JSON body. orjson turns integers beyond 64 bits into floats (losing digits), so a
    body holding a run of 19+ digits is parsed again by the standard library, which keeps
    them exact (it already passed orjson, so it is valid JSON; duplicate keys: last wins).

    NestingTooDeep for nesting deeper than MAX_JSON_DEPTH levels (orjson reports it as
    invalid JSON), or deeper than the standard library reads for that second parse;
    orjson.JSONDecodeError for a body that is not JSON."""
    try:
        parsed: JsonValue = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise NestingTooDeep(
                f"the JSON body has nesting deeper than {MAX_JSON_DEPTH} levels, the most "
                "rawquery reads"
            ) from None
        raise
    if _LONG_RUN in content.translate(_DIGITS_AS_ZERO):
        try:
            return cast(JsonValue, json.loads(content))
        except RecursionError:
            raise NestingTooDeep(
                "the JSON body holds integers beyond 64 bits inside nesting deeper than "
                "about 900 levels, the most the exact parser for such integers reads"
            ) from None
    return parsed


def _status_text(response: httpx.Response) -> str:
    phrase = response.reason_phrase
    return f"HTTP {response.status_code}" + (f" {phrase}" if phrase else "")
