"""The secrets of one connection, as a value that never prints them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

import orjson

SECRET_FIELDS = ("token", "password", "client_secret", "refresh_token", "access_token")

# The `rq connect` flag that gives each credential (an auth kind's `required_credentials`).
FLAGS = {
    "token": "--auth-token",
    "username": "--auth-user",
    "password": "--auth-pass",
    "client_id": "--client-id",
    "client_secret": "--client-secret",
    "refresh_token": "--refresh-token",
}


def flag_for(name: str) -> str:
    """The flag giving a credential, by field (`token`) or template name (`auth.token`)."""
    return FLAGS.get(name.removeprefix("auth."), name)


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """What `rq connect` was given plus what OAuth2 issued since; any field may be absent."""

    token: str | None = None
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None
    access_token: str | None = None
    access_token_expires_at: float | None = None

    def __repr__(self) -> str:
        present = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        return f"Credentials(set={present})"

    __str__ = __repr__

    def secrets(self) -> list[str]:
        """Every secret value held, for redaction (the username counts: it can identify)."""
        values = [getattr(self, name) for name in (*SECRET_FIELDS, "username", "client_id")]
        return [v for v in values if isinstance(v, str) and v]

    def template_names(self) -> dict[str, str]:
        """The `{{auth.*}}` names a spec may use."""
        names = {
            "auth.token": self.token,
            "auth.username": self.username,
            "auth.password": self.password,
        }
        return {k: v for k, v in names.items() if v is not None}

    def replace(self, **changes: str | float | None) -> Credentials:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def merged_with(self, newer: Credentials) -> Credentials:
        """`self` with every field that `newer` sets taken from `newer`."""
        changes = {f.name: getattr(newer, f.name) for f in fields(newer)}
        return self.replace(**{k: v for k, v in changes.items() if v is not None})

    def to_json(self) -> bytes:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return orjson.dumps({k: v for k, v in values.items() if v is not None})

    @classmethod
    def from_json(cls, data: bytes) -> Credentials:
        raw = orjson.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})
