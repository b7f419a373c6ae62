"""`Origin`: the (scheme, host, port) of a URL, the unit credentials are bound to.

The one rule for origins: scheme and host compared lower-case, a missing port is the
scheme's default. Used by the auth flows (sign only base_url's origin), the client
(credentials dropped on a cross-origin hop), endpoints and `rq connections update`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx

DEFAULT_PORTS = {"http": 80, "https": 443}
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int | None

    @classmethod
    def of(cls, url: str | httpx.URL) -> Origin:
        parts = urlsplit(str(url))
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:  # a templated or malformed port: compare it as written
            port = None
        host = (parts.hostname or parts.netloc).lower()
        return cls(scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme))

    @property
    def is_loopback(self) -> bool:
        if self.host in _LOCAL_NAMES or self.host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = DEFAULT_PORTS.get(self.scheme)
        port = "" if self.port is None or self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


def same_origin(a: str | httpx.URL, b: str | httpx.URL) -> bool:
    return Origin.of(a) == Origin.of(b)
