"""Authentication: one `httpx.Auth` flow per spec auth kind, built by the kind's model.

`build_auth(spec.auth, credentials, base_url=...)` asks the spec's auth model for its flow
(`spec.models.AuthKind.authenticator`); each kind's module here holds one flow class
(`api_key.py`, `bearer.py`, `basic.py`, `oauth2.py`, `custom.py`), the `none` kind has none.
Every flow signs only requests to `base_url`'s origin (the rule is in `auth/base.py`).

May import: errors, spec, http. Never runner, distributed, cli.
"""

from __future__ import annotations

import httpx

from rawquery_workers.auth.base import (
    AuthContext,
    CredentialsHook,
    LockFactory,
    OriginBoundAuth,
    Reload,
)
from rawquery_workers.http.redact import Redactor
from rawquery_workers.spec.credentials import Credentials
from rawquery_workers.spec.models import AuthKind

__all__ = ["AuthContext", "OriginBoundAuth", "build_auth"]


def build_auth(
    spec_auth: AuthKind,
    credentials: Credentials,
    *,
    base_url: str,
    on_credentials: CredentialsHook | None = None,
    refresh_lock: LockFactory | None = None,
    reload: Reload | None = None,
    token_client: httpx.Client | None = None,
    redactor: Redactor | None = None,
) -> httpx.Auth | None:
    """The auth for a spec's `auth` section, or None for `none`.

    Raises AuthError naming the missing `rq connect` flags when `credentials` lack what
    the kind needs. The hooks are those of `AuthContext`; a kind ignores those it does not
    use (`on_credentials`, `refresh_lock`, `reload` and `token_client` are OAuth2's).
    `redactor` (the connection's) learns every value a flow obtains the moment it has it:
    OAuth2 access and refresh tokens, custom auth's extracted names.
    """
    context = AuthContext(
        base_url,
        on_credentials=on_credentials,
        refresh_lock=refresh_lock,
        reload=reload,
        token_client=token_client,
        redactor=redactor,
    )
    return spec_auth.authenticator(credentials, context)
