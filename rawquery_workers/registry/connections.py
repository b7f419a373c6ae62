"""Connections: the checks `rq connect` and `rq connections update` share, and planning a
sync of one (`plan_sync`, for the CLI and beat in both modes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from rawquery_workers.errors import NotFoundError, SpecError
from rawquery_workers.registry import Registry
from rawquery_workers.spec.credentials import Credentials
from rawquery_workers.spec.loading import load_spec_file, parse_spec, spec_to_json
from rawquery_workers.spec.models import Spec

if TYPE_CHECKING:
    from rawquery_workers.registry.credential_origins import Move

CONNECTION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$")


def check_connection_name(name: str) -> str:
    if not CONNECTION_NAME.fullmatch(name):
        raise SpecError(
            f"connection name '{name}' is not valid: use letters, digits, '_' and '-' "
            "(at most 63, not starting with '-'); it becomes the Iceberg namespace"
        )
    return name


def load_checked_spec(path: str | Path) -> tuple[Spec, dict[str, object]]:
    spec = load_spec_file(path)
    return spec, spec_to_json(spec)


def require_credentials(spec: Spec, creds: Credentials, source: str) -> None:
    missing = spec.auth.required_credentials(creds)
    if missing:
        raise SpecError(
            f"auth.type: '{spec.auth.type}' auth needs {', '.join(missing)} (not given)",
            source=source,
        )


def updated_credentials(
    old: Spec | None,
    new: Spec,
    stored: Credentials,
    given: Credentials | None,
    *,
    keep: bool,
    source: str,
) -> tuple[Credentials | None, list[Move]]:
    """The credentials an update stores (None: the stored ones stay) and the moves of
    stored credentials to other origins it makes (`credential_origins`).

    When `new` sends credentials to an origin `old` did not, the stored ones go along only
    with `keep`; otherwise the credentials must be given again, and only those are stored.
    Raises SpecError (nothing is changed) when they are not, or lack what `new` needs.
    `old` None (a stored spec that no longer validates): every destination counts as new."""
    from rawquery_workers.registry.credential_origins import moves  # `plan_sync` needs none of it

    moved = moves(old, new) if stored.secrets() else []
    if moved and not keep:
        if given is None:
            raise SpecError(_moved_problem(new, moved), source=source)
        require_credentials(new, given, source)
        return given, []
    creds = stored.merged_with(given) if given is not None else None
    require_credentials(new, creds or stored, source)
    return creds, moved


def _moved_problem(new: Spec, moved: list[Move]) -> str:
    where = "; ".join(
        f"{m.field} goes to {m.after}" + (f", not {m.before}" if m.before else "") for m in moved
    )
    flags = " ".join(f"{f} ..." for f in new.auth.required_credentials(Credentials()))
    again = f"give them again ({flags})" if flags else "give them again"
    return (
        f"the new spec sends the stored credentials to another host ({where}); {again}, or "
        "pass --keep-credentials to send the stored ones there; nothing was changed"
    )


def checked_schedule(text: str | None) -> str | None:
    from rawquery_workers.registry.schedule import parse_schedule  # not needed by `plan_sync`

    return None if text is None else parse_schedule(text).text


def plan_sync(
    registry: Registry,
    name: str,
    streams: list[str] | None = None,
    full_refresh: bool = False,
    trigger: str = "manual",
) -> tuple[str, list[str]]:
    """Record a queued sync of `streams` (default: all) and return its id and streams: the
    parents of child streams are added, and every parent comes before its children."""
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
    chosen = spec.with_parents(chosen)  # a child stream's parent syncs first, in the same sync
    sync_id = registry.create_sync(
        name, chosen, full_refresh=full_refresh, trigger=trigger, spec=record.spec
    )
    return sync_id, chosen
