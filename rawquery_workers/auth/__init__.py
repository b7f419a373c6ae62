"""Authentication: one `httpx.Auth` per spec auth kind, chosen by `build_auth`.

    none      -> no auth (None)
    api_key   -> ApiKeyAuthenticator   header or query parameter from --auth-token
    bearer    -> BearerAuthenticator   Authorization: Bearer <--auth-token>
    basic     -> BasicAuthenticator    --auth-user / --auth-pass
    oauth2    -> OAuth2Authenticator   refresh_token / client_credentials grants
    custom    -> CustomAuthenticator   optional login call, templated headers and params

Every one signs only requests to `base_url`'s origin (the rule is in `auth/base.py`).
"""

from __future__ import annotations

import httpx

from rawquery_workers.auth.api_key import ApiKeyAuthenticator
from rawquery_workers.auth.base import Origin, OriginBoundAuth
from rawquery_workers.auth.basic import BasicAuthenticator
from rawquery_workers.auth.bearer import BearerAuthenticator
from rawquery_workers.auth.custom import CustomAuthenticator
from rawquery_workers.auth.oauth2 import (
    CredentialsHook,
    LockFactory,
    OAuth2Authenticator,
    Reload,
)
from rawquery_workers.credentials import Credentials
from rawquery_workers.spec.models import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    CustomAuth,
    NoAuth,
    OAuth2Auth,
)

__all__ = [
    "ApiKeyAuthenticator",
    "BasicAuthenticator",
    "BearerAuthenticator",
    "CustomAuthenticator",
    "OAuth2Authenticator",
    "Origin",
    "OriginBoundAuth",
    "build_auth",
]

AuthSpec = NoAuth | ApiKeyAuth | BearerAuth | BasicAuth | OAuth2Auth | CustomAuth


def build_auth(
    spec_auth: AuthSpec,
    credentials: Credentials,
    *,
    base_url: str,
    on_credentials: CredentialsHook | None = None,
    refresh_lock: LockFactory | None = None,
    reload: Reload | None = None,
    token_client: httpx.Client | None = None,
) -> httpx.Auth | None:
    """The auth for a spec's `auth` section, or None for `none`.

    Raises AuthError naming the missing `rq connect` flags when `credentials` lack what
    the kind needs. The OAuth2 hooks are ignored by the other kinds: `on_credentials`
    persists newly issued tokens before they are used, `refresh_lock` and `reload` make
    a refresh single-flight across workers, `token_client` sends `refresh()`'s request.
    """
    match spec_auth:
        case NoAuth():
            return None
        case ApiKeyAuth():
            return ApiKeyAuthenticator(spec_auth, credentials, base_url=base_url)
        case BearerAuth():
            return BearerAuthenticator(credentials, base_url=base_url)
        case BasicAuth():
            return BasicAuthenticator(credentials, base_url=base_url)
        case OAuth2Auth():
            return OAuth2Authenticator(
                spec_auth,
                credentials,
                base_url=base_url,
                on_credentials=on_credentials,
                refresh_lock=refresh_lock,
                reload=reload,
                token_client=token_client,
            )
        case CustomAuth():
            return CustomAuthenticator(spec_auth, credentials, base_url=base_url)
    raise TypeError(f"unknown auth spec {type(spec_auth).__name__}")
