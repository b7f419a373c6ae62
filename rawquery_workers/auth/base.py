"""What every auth shares: the origin rule, the sync flow driver and safe error text.

Each auth kind is one `httpx.Auth` subclass, built by its spec model's `authenticator`
(`spec.models.AuthKind`) from the connection's credentials and `AuthContext`. Its
flow is a generator in httpx's own style: yield a request, receive its response, and on a
401 refresh or log in again and yield the request once more. Token and login calls are
yielded through the same flow, so a test can drive a flow by hand with no I/O.

The origin rule
---------------
Credentials only travel to `base_url`'s origin: the (scheme, host, port) triple, with the
default port filled in (`https://api.example.com` and `https://api.example.com:443/v1` are
the same origin; `http://` or another port or subdomain is not). A request to any other
origin - a next-page URL or Link header pointing elsewhere - passes through the auth
untouched: no header, no query parameter, no login. It is followed without credentials.
The only other places that receive secrets are the ones the spec names for them: OAuth2's
`token_url`/`refresh_url` get the client id, secret and refresh token, and a custom auth's
`pre_request.url` gets its templated login.

Redirects are outside an auth's reach: httpx re-sends a request's headers to the redirect
target and strips only `Authorization` on a cross-origin hop. A client that carries custom
credential headers must not follow redirects on its own (or must re-check the origin).

All flows are synchronous (`httpx.Client`): OAuth2 and custom login hold a lock while their
token or login call is in flight, which must not block an event loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from rawquery_workers.errors import AuthError
from rawquery_workers.http.redact import Redactor
from rawquery_workers.spec.credentials import Credentials, flag_for
from rawquery_workers.spec.origin import Origin

Flow = Generator[httpx.Request, httpx.Response, None]
CredentialsHook = Callable[[Credentials], None]
LockFactory = Callable[[], AbstractContextManager[object]]
Reload = Callable[[], Credentials]


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What a connection gives the auth flow of its spec (`AuthKind.authenticator`).

    `on_credentials` persists newly issued tokens before they are used; `refresh_lock` and
    `reload` make a token refresh single-flight across workers; `token_client` sends a
    refresh made outside a request; `redactor` (the connection's) learns every value a flow
    obtains the moment it has it. A kind uses the hooks it needs and ignores the others.
    """

    base_url: str
    on_credentials: CredentialsHook | None = None
    refresh_lock: LockFactory | None = None
    reload: Reload | None = None
    token_client: httpx.Client | None = None
    redactor: Redactor | None = None


class OriginBoundAuth(httpx.Auth):
    """An auth that signs only requests to `base_url`'s origin (see the module docstring).

    Subclasses implement `authenticated_flow`; `auth_flow` applies the origin rule first.
    """

    def __init__(self, base_url: str) -> None:
        self.origin = Origin.of(base_url)

    def applies_to(self, request: httpx.Request) -> bool:
        return Origin.of(request.url) == self.origin

    def auth_flow(self, request: httpx.Request) -> Flow:
        if not self.applies_to(request):
            yield request
            return
        yield from self.authenticated_flow(request)

    def authenticated_flow(self, request: httpx.Request) -> Flow:
        raise NotImplementedError

    def sync_auth_flow(self, request: httpx.Request) -> Flow:
        """httpx's driver, plus closing the inner flow at once when the client gives up,
        so a lock held around a token or login call is released right away."""
        flow = self.auth_flow(request)
        try:
            request = next(flow)
            while True:
                response = yield request
                if self.requires_response_body:
                    response.read()
                try:
                    request = flow.send(response)
                except StopIteration:
                    return
        finally:
            flow.close()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise NotImplementedError(f"{type(self).__name__} works with httpx.Client only")
        yield request  # pragma: no cover - unreachable; makes this an async generator


def drive(flow: Flow, client: httpx.Client) -> httpx.Response | None:
    """Run a flow to its end with `client`, outside any request (e.g. a refresh before a
    sync). Returns the last response, or None when the flow sent nothing."""
    response: httpx.Response | None = None
    try:
        request = next(flow)
        while True:
            response = client.send(request)
            request = flow.send(response)
    except StopIteration:
        return response
    finally:
        flow.close()


def missing_error(auth_type: str, names: Iterable[str]) -> AuthError:
    """The AuthError for credentials the connection was created without (names only)."""
    flags = sorted({flag_for(name) for name in names})
    return AuthError(
        f"connection needs {', '.join(flags)} (auth type {auth_type}); "
        f"give {'it' if len(flags) == 1 else 'them'} with `rq connections update NAME "
        f"--spec FILE {' '.join(f + ' ...' for f in flags)}`"
    )


def safe_url(url: str | httpx.URL, redactor: Redactor) -> str:
    """`url` for a message: scheme, host, port and path only (query, fragment and userinfo
    dropped), with any secret value that was templated into the path masked."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return redactor.redact(urlunsplit((parts.scheme, netloc, parts.path, "", "")))
