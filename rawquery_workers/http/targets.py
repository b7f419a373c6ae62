"""Where a followed URL may lead: the private-target rule.

A next-page URL, a Link header or a redirect is written by the API (or by whoever controls
its answers): it could point a worker at the cloud metadata service (169.254.169.254) or at
services only the worker's own network reaches. So before a request goes to a host other
than base_url's, the addresses that host resolves to are checked, by kind:

    kind of target address                  followed from a base_url on
    public                                  any address
    private  (10/8, 172.16/12, 192.168/16,  a private or loopback address
              100.64/10, fc00::/7, ...)
    loopback (127/8, ::1, 0.0.0.0)          a loopback address
    link-local (169.254/16, fe80::/10)      never

A refused request is never sent (no connection is opened). A base_url's own host is never
checked: it is what the user configured. `RAWQUERY_ALLOW_PRIVATE_TARGETS=1` turns the rule
off. A host that does not resolve is let through: the request then fails to connect, or a
proxy (HTTP_PROXY) resolves it. The check reads DNS once per host a minute; the connection
resolves again, so a DNS answer that changes in between is not caught.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Literal

import httpx

Kind = Literal["public", "private", "loopback", "link-local"]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]
OPT_OUT = "RAWQUERY_ALLOW_PRIVATE_TARGETS=1"
_CACHE_SECONDS = 60.0
# The target kinds a base_url of each kind may lead to.
_REACHES: dict[Kind, frozenset[Kind]] = {
    "public": frozenset({"public"}),
    "private": frozenset({"public", "private"}),
    "link-local": frozenset({"public", "private"}),
    "loopback": frozenset({"public", "private", "loopback"}),
}


def address_kind(address: Address) -> Kind:
    """What kind of network `address` is on (an IPv4-mapped IPv6 address as its IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback or address.is_unspecified:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    return "public" if address.is_global else "private"


def may_follow(base: Kind, target: Kind) -> bool:
    """THE rule: whether a base_url on a `base` address may lead to a `target` address."""
    return target in _REACHES[base]


def resolve(host: str) -> list[str]:
    """The addresses `host` resolves to (none when it does not resolve)."""
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in found]


class TargetGuard:
    """Applies the rule for one base_url. `refusal(url)` is None for a URL that may be
    requested, else why not. `resolver` and `clock` are injectable (tests)."""

    def __init__(
        self,
        base_url: str,
        *,
        allow_private: bool = False,
        resolver: Resolver = resolve,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_host = httpx.URL(base_url).host.lower()
        self.allow_private = allow_private
        self._resolver = resolver
        self._clock = clock
        self._base_kind: Kind | None = None
        self._seen: dict[str, tuple[float, str | None]] = {}

    def refusal(self, url: httpx.URL) -> str | None:
        host = url.host.lower()
        if self.allow_private or host == self.base_host:
            return None
        now = self._clock()
        cached = self._seen.get(host)
        if cached is not None and now - cached[0] < _CACHE_SECONDS:
            return cached[1]
        reason = self._judge(host)
        self._seen[host] = (now, reason)
        return reason

    def _judge(self, host: str) -> str | None:
        base = self._kind_of_base()
        for text in self._addresses(host):
            kind = address_kind(ipaddress.ip_address(text))
            if may_follow(base, kind):
                continue
            where = host if host == text else f"{host} ({text})"
            if kind == "link-local":
                return f"{where} is a link-local address (where cloud metadata services live)"
            shown = "public" if base == "public" else f"on a {base} address"
            return f"{where} is a {kind} address and base_url's host {self.base_host} is {shown}"
        return None

    def _kind_of_base(self) -> Kind:
        """The base_url host's kind: the most exposed of its addresses (public when it does
        not resolve, the strictest choice)."""
        if self._base_kind is None:
            kinds = {address_kind(ipaddress.ip_address(a)) for a in self._addresses(self.base_host)}
            order: list[Kind] = ["public", "link-local", "private", "loopback"]
            self._base_kind = next((k for k in order if k in kinds), "public")
        return self._base_kind  # type: ignore[return-value]  # set just above

    def _addresses(self, host: str) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        found = []
        for text in self._resolver(host):
            try:
                found.append(str(ipaddress.ip_address(text.split("%", 1)[0])))
            except ValueError:
                continue
        return found
