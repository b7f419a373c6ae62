"""`oauth2`: access tokens from the provider's token endpoint, refreshed when needed.

Grants: `refresh_token` (POST `refresh_url` or `token_url` with grant_type, refresh_token,
client_id, client_secret in the form body) and `client_credentials` (client_id,
client_secret and the spec's `scopes` as `scope`). When to exchange:
- `refresh()`, the refresh-auth step before each sync;
- in a request's flow, when there is no access token or it expires within 60 s;
- once more when the API answers 401; a second 401 is handed back to the client.

Rotation: providers like HubSpot issue a new refresh token with each exchange and reject
the old one. `on_credentials(new)` is called with the new credentials (rotated refresh
token included) before the new access token is used, so the caller can persist them.

Single flight: an exchange runs under `refresh_lock()` (a cluster-wide lock in distributed
mode). Inside it, `reload()` re-reads the stored credentials; when they already hold a
different, unexpired access token than the one known to be stale, another worker has
refreshed and that token is used instead of refreshing again (which would also spend the
rotated refresh token a second time).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

import httpx

from rawquery_workers.auth.base import (
    CredentialsHook,
    Flow,
    LockFactory,
    OriginBoundAuth,
    Reload,
    drive,
    missing_error,
    safe_url,
)
from rawquery_workers.errors import AuthError, RetriableError, SourceError
from rawquery_workers.http.client import error_for_status
from rawquery_workers.http.redact import Redactor
from rawquery_workers.spec.credentials import Credentials
from rawquery_workers.spec.models import OAuth2Auth

EXPIRY_MARGIN = 60.0  # seconds: a token this close to its expiry is refreshed first
TOKEN_TIMEOUT = 30.0  # seconds, for `refresh()` when no token client is given
_MAX_DETAIL = 300

Clock = Callable[[], float]


class OAuth2Authenticator(OriginBoundAuth):
    requires_response_body = True  # token responses are parsed inside the flow

    def __init__(
        self,
        spec: OAuth2Auth,
        credentials: Credentials,
        *,
        base_url: str,
        on_credentials: CredentialsHook | None = None,
        refresh_lock: LockFactory | None = None,
        reload: Reload | None = None,
        token_client: httpx.Client | None = None,
        clock: Clock = time.time,
        redactor: Redactor | None = None,
    ) -> None:
        super().__init__(base_url)
        if missing := [n for n in spec.credential_fields() if not getattr(credentials, n)]:
            raise missing_error("oauth2", missing)
        self._spec = spec
        self._creds = credentials
        self._on_credentials = on_credentials
        local_lock = threading.Lock()
        self._refresh_lock: LockFactory = refresh_lock or (lambda: local_lock)
        self._reload = reload
        self._token_client = token_client
        self._clock = clock
        # The connection's redactor learns every token as soon as it is issued or reloaded.
        self._redactor = redactor if redactor is not None else Redactor()
        self._redactor.add_secrets(*credentials.secrets())

    @property
    def credentials(self) -> Credentials:
        """The credentials in use now (the latest issued tokens included)."""
        return self._creds

    @property
    def token_url(self) -> str:
        if self._spec.grant_type == "refresh_token":
            return self._spec.effective_refresh_url
        return self._spec.token_url

    def refresh(self) -> None:
        """Exchange for a new access token now, unless another worker already did since
        these credentials were loaded. Raises AuthError when the provider refuses."""
        client = self._token_client or httpx.Client(timeout=TOKEN_TIMEOUT)
        try:
            drive(self.refresh_flow(stale=self._creds.access_token), client)
        except httpx.TransportError as exc:
            raise RetriableError(
                f"OAuth2 token request to {self._where()} failed: {type(exc).__name__}; "
                "check the network or try again later"
            ) from exc
        finally:
            if self._token_client is None:
                client.close()

    def ensure_fresh(self) -> None:
        """Refresh only if the access token is missing or about to expire (a later segment's
        refresh-auth step; the flow would otherwise do it on the next request)."""
        if not self._usable(self._creds):
            self.refresh()

    def authenticated_flow(self, request: httpx.Request) -> Flow:
        if not self._usable(self._creds):
            yield from self.refresh_flow(stale=self._creds.access_token)
        used = self._sign(request)
        response = yield request
        if response.status_code != 401:
            return
        yield from self.refresh_flow(stale=used)
        self._sign(request)
        yield request

    def refresh_flow(self, stale: str | None) -> Flow:
        """Yield the token request unless, under the lock, a usable token other than
        `stale` turns up (issued by another thread or worker)."""
        with self._refresh_lock():
            if self._reload is not None:
                self._creds = self._creds.merged_with(self._reload())
                self._redactor.add_secrets(*self._creds.secrets())
            current = self._creds
            if current.access_token and current.access_token != stale and self._usable(current):
                return
            response = yield self._token_request()
            self._accept(response)

    # --- pieces -------------------------------------------------------------------------

    def _usable(self, creds: Credentials) -> bool:
        if not creds.access_token:
            return False
        expires_at = creds.access_token_expires_at
        return expires_at is None or expires_at - self._clock() > EXPIRY_MARGIN

    def _sign(self, request: httpx.Request) -> str:
        token = self._creds.access_token
        assert token, "signing before a token was issued"
        request.headers["Authorization"] = f"Bearer {token}"
        return token

    def _token_request(self) -> httpx.Request:
        creds = self._creds
        form: dict[str, str] = {"grant_type": self._spec.grant_type}
        if self._spec.grant_type == "refresh_token":
            form["refresh_token"] = creds.refresh_token or ""
        form["client_id"] = creds.client_id or ""
        form["client_secret"] = creds.client_secret or ""
        if self._spec.scopes:
            form["scope"] = " ".join(self._spec.scopes)
        return httpx.Request(
            "POST", self.token_url, data=form, headers={"Accept": "application/json"}
        )

    def _accept(self, response: httpx.Response) -> None:
        payload = _token_payload(response)
        access = payload.get("access_token")
        if response.is_error or not isinstance(access, str) or not access:
            raise self._token_error(response.status_code, payload)
        rotated = payload.get("refresh_token")
        expires_in = _seconds(payload.get("expires_in"))
        new = self._creds.replace(
            access_token=access,
            access_token_expires_at=None if expires_in is None else self._clock() + expires_in,
            refresh_token=rotated
            if isinstance(rotated, str) and rotated
            else self._creds.refresh_token,
        )
        self._redactor.add_secrets(access, new.refresh_token)
        if self._on_credentials is not None:
            self._on_credentials(new)  # persisted before the new token is ever used
        self._creds = new

    def _token_error(self, status: int, payload: dict[str, object]) -> SourceError:
        grant = self._spec.grant_type
        where = f"OAuth2 {grant} request to {self._where()}"
        detail = self._detail(payload)
        kind = error_for_status(status, ())
        if kind is None:
            return AuthError(f"{where} answered without an access_token{detail}")
        if kind is RetriableError:
            return RetriableError(
                f"{where} failed: HTTP {status}{detail}; the provider is unavailable, "
                "try again later",
                status=status,
            )
        flags = "--client-id/--client-secret"
        hint = ""
        if grant == "refresh_token":
            flags += "/--refresh-token"
            hint = " (a refresh token may have been revoked, expired or already used)"
        return AuthError(
            f"{where} was refused: HTTP {status}{detail}; check the connection's "
            f"{flags}{hint} and set new ones with `rq connections update`"
        )

    def _detail(self, payload: dict[str, object]) -> str:
        """The provider's `error` / `error_description`, secrets masked."""
        error, description = payload.get("error"), payload.get("error_description")
        parts = [str(v) for v in (error, description) if isinstance(v, str | int) and v]
        if not parts:
            return ""
        text = parts[0] if len(parts) == 1 else f"{parts[0]} ({parts[1]})"
        return ": " + self._redactor.redact(text)[:_MAX_DETAIL]

    def _where(self) -> str:
        return safe_url(self.token_url, self._redactor)


def _token_payload(response: httpx.Response) -> dict[str, object]:
    """The token response as a dict: JSON, or a form-encoded body (some providers)."""
    content_type = response.headers.get("content-type", "")
    try:
        if "application/x-www-form-urlencoded" in content_type:
            data: object = dict(parse_qsl(response.text))
        else:
            data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
