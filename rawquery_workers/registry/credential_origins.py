"""Where a spec sends a connection's credentials, and what a change of spec moves.

Stored credentials were given for certain hosts. The places a spec sends them are its
destinations, each named by the spec field holding its URL; the auth kind says which
(`AuthKind.credential_urls`: `base_url` for most, also `auth.token_url` and
`auth.refresh_url` for oauth2, `auth.pre_request.url` for custom, none for `none`).

A destination is compared by origin: scheme, host and port, the default port filled in.
`rq connections update` refuses a spec that moves a destination to another origin unless
the credentials are given again (only those are stored then) or `--keep-credentials` says
to send the stored ones there (`moves` lists what would move, for the refusal or the note).
`plain_http` lists the destinations that would get credentials over plain http on a host
other than this machine, for the warning `rq connect` and `rq connections update` print.
"""

from __future__ import annotations

from dataclasses import dataclass

from rawquery_workers.spec.models import Spec
from rawquery_workers.spec.origin import Origin


@dataclass(frozen=True, slots=True)
class Move:
    """Credentials that went to `before` (None: a destination the old spec lacked) would
    now go to `after`, through the spec field `field`."""

    field: str
    before: Origin | None
    after: Origin

    def __str__(self) -> str:
        start = f" from {self.before}" if self.before else ""
        return f"credentials move{start} to {self.after} ({self.field})"


def destinations(spec: Spec) -> dict[str, Origin]:
    """The spec fields whose URLs receive credentials, with their origins."""
    urls = spec.auth.credential_urls(spec.base_url)
    return {name: Origin.of(url) for name, url in urls.items()}


def moves(old: Spec | None, new: Spec) -> list[Move]:
    """Where `new` would send credentials given for `old`'s destinations and `old` did not.

    A field whose origin changed moves; a field `new` adds moves unless its origin already
    received the credentials under `old` (an OAuth2 refresh_url on the token_url's host).
    `old` None (unknown): every destination of `new` moves."""
    before: dict[str, Origin] = {}
    if old is not None:
        # Credentials stored with a spec that sends none were given for its API all the same.
        before = destinations(old) or {"base_url": Origin.of(old.base_url)}
    after = destinations(new)
    known = set(before.values())
    found = []
    for field, origin in after.items():
        previous = before.get(field)
        if origin == previous or (previous is None and origin in known):
            continue
        found.append(Move(field, previous, origin))
    return found


def plain_http(spec: Spec) -> list[tuple[str, Origin]]:
    """The destinations reached over plain http on a host other than this machine."""
    return [
        (field, origin)
        for field, origin in destinations(spec).items()
        if origin.scheme == "http" and not origin.is_loopback
    ]


def plain_http_warnings(spec: Spec) -> list[str]:
    """One warning line per destination `plain_http` finds."""
    return [
        f"warning: credentials go over plain http to {origin} ({field}): anyone on the "
        "network path can read them; use https"
        for field, origin in plain_http(spec)
    ]
