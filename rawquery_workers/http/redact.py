"""Masking secrets in anything that may be shown: URLs, headers, messages, body excerpts.

A `Redactor` knows a connection's secret values (its credentials, plus tokens issued
during a sync) and the names under which credentials travel. It masks, with `***`:
- every occurrence of a secret value in a string, raw or percent-encoded. Values shorter
  than 4 characters are masked only as whole words (masking every "me" inside other
  words would make messages unreadable);
- in URLs, the userinfo and the value of credential-looking query parameters (`token`,
  `key`, `api_key`, `access_token`, `password`, `secret`, `signature`, ..., names holding
  "secret"/"password"/"signature", and the spec's own `query_param` / custom auth params);
- in headers, `Authorization`, `Cookie`, `Set-Cookie`, `X-API-Key` and similar names, the
  spec's own auth header names, and any header whose value holds a secret.

The connection's one redactor is shared by its auth flow, HTTP client and paginators
(`context.ConnectionContext`): every value an auth flow obtains (OAuth2 access and refresh
tokens, custom auth's extracted names) joins it the moment it exists, so messages, stored
errors and paginator state (`scrub_state`) never carry it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

import httpx
from pydantic import JsonValue

from rawquery_workers.spec.credentials import Credentials
from rawquery_workers.spec.models import AuthKind

MASK = "***"
_MIN_SUBSTRING = 4

SENSITIVE_PARAMS = frozenset(
    {
        "token", "key", "api_key", "apikey", "access_token", "password", "secret",
        "signature", "sig", "auth", "refresh_token", "id_token", "auth_token",
        "client_secret", "session_token", "private_token", "api_token", "apitoken",
        "access_key", "secret_key", "passwd", "pwd", "x_amz_signature", "x_amz_credential",
        "x_amz_security_token", "x_goog_signature", "x_goog_credential",
    }
)  # fmt: skip
_PARAM_WORDS = ("secret", "password", "signature")

SENSITIVE_HEADERS = frozenset(
    {
        "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
        "api-key", "apikey", "x-auth-token", "x-access-token", "x-session-token",
    }
)  # fmt: skip
_HEADER_WORDS = ("token", "secret", "password", "api-key", "apikey", "api_key", "session")


def _param_key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


class Redactor:
    """Masks the secrets of one connection. `add_secrets` registers values issued later."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        param_names: Iterable[str] = (),
        header_names: Iterable[str] = (),
    ) -> None:
        self._params = frozenset(_param_key(n) for n in param_names)
        self._headers = frozenset(n.strip().lower() for n in header_names)
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self.add_secrets(*secrets)

    @classmethod
    def for_auth(cls, auth: AuthKind, credentials: Credentials) -> Redactor:
        """A redactor for a spec's auth config and the connection's credentials."""
        return cls(credentials.secrets(), auth.credential_params(), auth.credential_headers())

    def add_secrets(self, *values: str | None) -> None:
        """Also mask these values from now on (e.g. an access token issued mid-sync)."""
        with self._lock:
            new = {v for v in values if v} - self._secrets
            if not new:
                return
            self._secrets = self._secrets | new
            self._pattern = _compile(self._secrets)

    @property
    def secrets(self) -> frozenset[str]:
        return self._secrets

    def redact(self, text: str) -> str:
        """`text` with every known secret value replaced by `***`."""
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern and text else text

    def redact_url(self, url: str | httpx.URL) -> str:
        """`url` with userinfo, credential query params and secret values masked."""
        text = str(url)
        try:
            parts = urlsplit(text)
        except ValueError:
            return self.redact(text)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
        query = self._redact_pairs(parts.query)
        fragment = self._redact_pairs(parts.fragment) if "=" in parts.fragment else parts.fragment
        rebuilt = urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
        return self.redact(rebuilt)

    def redact_headers(
        self, headers: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> dict[str, str]:
        """A copy of `headers` with credential headers' values masked (names kept)."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        return {
            name: MASK if self.is_sensitive_header(name, value) else self.redact(value)
            for name, value in items
        }

    def strip_params(self, url: str, *, by_name: bool = True) -> str:
        """`url` without the query parameters that could carry one of OUR credentials: those
        whose value holds a known secret and, when `by_name`, those named like the spec's
        auth params (an api_key `query_param`, a custom auth's `params`). Every other
        parameter stays, whatever its name: the `X-Amz-Signature` of a pre-signed URL the
        API redirects to is the target's own credential, not ours."""
        parts = urlsplit(url)
        if not parts.query:
            return url
        pieces = parts.query.split("&")
        kept = []
        for piece in pieces:
            name, _, value = piece.partition("=")
            name, value = unquote_plus(name), unquote_plus(value)
            # a value under 4 characters (a page number equal to a numeric tenant id) is
            # no credential worth losing the parameter for
            secret = len(value) >= _MIN_SUBSTRING and self.redact(value) != value
            if secret or (by_name and _param_key(name) in self._params):
                continue
            kept.append(piece)
        if len(kept) == len(pieces):
            return url
        return urlunsplit(parts._replace(query="&".join(kept)))

    def scrub_state(self, state: dict[str, JsonValue]) -> dict[str, JsonValue]:
        """Paginator `state` fit to store (Iceberg `rq.resume`) or send (Celery messages):
        every string in it loses the query parameters whose value is a known secret (an
        API echoing a session token or api key into its next-page link). The auth adds
        its credentials again when the page is requested on base_url's origin."""
        scrubbed = self._scrub(state)
        return scrubbed if isinstance(scrubbed, dict) else state

    def _scrub(self, value: JsonValue) -> JsonValue:
        if isinstance(value, str):
            return self.strip_params(value, by_name=False) if "=" in value else value
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        return value

    def is_sensitive_param(self, name: str, value: str = "") -> bool:
        """True when a query parameter carries a credential (by its name or its value)."""
        key = _param_key(name)
        if key in SENSITIVE_PARAMS or key in self._params:
            return True
        if any(word in key for word in _PARAM_WORDS):
            return True
        return bool(value) and value in self._secrets

    def is_sensitive_header(self, name: str, value: str = "") -> bool:
        """True when a header carries a credential (by its name or by holding a secret)."""
        key = name.strip().lower()
        if key in SENSITIVE_HEADERS or key in self._headers:
            return True
        if any(word in key for word in _HEADER_WORDS):
            return True
        return bool(value) and self.redact(value) != value

    def _redact_pairs(self, query: str) -> str:
        if not query:
            return query
        pieces = []
        for piece in query.split("&"):
            name, sep, value = piece.partition("=")
            if sep and self.is_sensitive_param(unquote_plus(name), unquote_plus(value)):
                piece = f"{name}={MASK}"
            pieces.append(piece)
        return "&".join(pieces)


def _compile(secrets: frozenset[str]) -> re.Pattern[str] | None:
    """One alternation of every secret and its URL encodings, longest first."""
    forms: set[str] = set()
    for secret in secrets:
        forms.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
    long_forms = sorted((f for f in forms if len(f) >= _MIN_SUBSTRING), key=len, reverse=True)
    short_forms = sorted((f for f in forms if len(f) < _MIN_SUBSTRING), key=len, reverse=True)
    alternatives = [re.escape(f) for f in long_forms]
    alternatives += [rf"(?<![\w]){re.escape(f)}(?![\w])" for f in short_forms]
    return re.compile("|".join(alternatives)) if alternatives else None
