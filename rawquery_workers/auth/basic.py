"""`basic`: HTTP basic auth (RFC 7617) from `--auth-user` / `--auth-pass`."""

from __future__ import annotations

from base64 import b64encode

import httpx

from rawquery_workers.auth.base import Flow, OriginBoundAuth, missing_error
from rawquery_workers.spec.credentials import Credentials


class BasicAuthenticator(OriginBoundAuth):
    def __init__(self, credentials: Credentials, *, base_url: str) -> None:
        super().__init__(base_url)
        missing = [n for n in ("username", "password") if getattr(credentials, n) is None]
        if missing:
            raise missing_error("basic", missing)
        pair = f"{credentials.username}:{credentials.password}".encode()
        self._header = "Basic " + b64encode(pair).decode("ascii")

    def authenticated_flow(self, request: httpx.Request) -> Flow:
        request.headers["Authorization"] = self._header
        yield request
