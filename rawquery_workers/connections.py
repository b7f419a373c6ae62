"""Connections: the checks `rq connect` and `rq connections update` share, and planning a
sync of one (`plan_sync`, for the CLI and beat in both modes)."""

from __future__ import annotations

import re
from pathlib import Path

from rawquery_workers.credentials import Credentials
from rawquery_workers.errors import NotFoundError, SpecError
from rawquery_workers.registry import Registry
from rawquery_workers.spec.loading import load_spec_file, parse_spec, spec_to_json
from rawquery_workers.spec.models import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    CustomAuth,
    OAuth2Auth,
    Spec,
)

CONNECTION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$")
_FLAG_FOR = {
    "auth.token": "--auth-token",
    "auth.username": "--auth-user",
    "auth.password": "--auth-pass",
}


def check_connection_name(name: str) -> str:
    if not CONNECTION_NAME.fullmatch(name):
        raise SpecError(
            f"connection name '{name}' is not valid: use letters, digits, '_' and '-' "
            "(at most 63, not starting with '-'); it becomes the Iceberg namespace"
        )
    return name


def missing_credentials(spec: Spec, creds: Credentials) -> list[str]:
    """The command-line flags the spec's auth needs but that were not given."""
    from rawquery_workers.templating import placeholders  # not needed by `plan_sync`

    auth = spec.auth
    needed: list[str] = []
    match auth:
        case ApiKeyAuth() | BearerAuth():
            needed = ["auth.token"]
        case BasicAuth():
            needed = ["auth.username", "auth.password"]
        case CustomAuth():
            values = [auth.headers, auth.params]
            if auth.pre_request is not None:
                pre = auth.pre_request
                values += [pre.headers, pre.body or {}, {"url": pre.url}]
            needed = sorted({n for v in values for n in placeholders(v) if n in _FLAG_FOR})
        case OAuth2Auth():
            flags = [("client_id", "--client-id"), ("client_secret", "--client-secret")]
            if auth.grant_type == "refresh_token":
                flags.append(("refresh_token", "--refresh-token"))
            return [flag for field, flag in flags if not getattr(creds, field)]
    have = creds.template_names()
    return [_FLAG_FOR[n] for n in needed if not have.get(n)]


def load_checked_spec(path: str | Path) -> tuple[Spec, dict[str, object]]:
    spec = load_spec_file(path)
    return spec, spec_to_json(spec)


def require_credentials(spec: Spec, creds: Credentials, source: str) -> None:
    missing = missing_credentials(spec, creds)
    if missing:
        raise SpecError(
            f"auth.type: '{spec.auth.type}' auth needs {', '.join(missing)} (not given)",
            source=source,
        )


def checked_schedule(text: str | None) -> str | None:
    from rawquery_workers.schedule import parse_schedule  # not needed by `plan_sync`

    return None if text is None else parse_schedule(text).text


def plan_sync(
    registry: Registry,
    name: str,
    streams: list[str] | None = None,
    full_refresh: bool = False,
    trigger: str = "manual",
) -> tuple[str, list[str]]:
    """Record a queued sync of `streams` (default: all) and return its id and streams."""
    record = registry.get_connection(name)
    spec = parse_spec(record.spec, source=f"connection '{name}'")
    known = [s.name for s in spec.streams]
    chosen = streams or known
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise NotFoundError(
            f"connection '{name}' has no stream {', '.join(map(repr, unknown))}; "
            f"its streams are {', '.join(known)}"
        )
    sync_id = registry.create_sync(name, chosen, full_refresh=full_refresh, trigger=trigger)
    return sync_id, chosen
