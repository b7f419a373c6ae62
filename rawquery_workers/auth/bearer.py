"""`bearer`: `Authorization: Bearer <--auth-token>`."""

from __future__ import annotations

import httpx

from rawquery_workers.auth.base import Flow, OriginBoundAuth, missing_error
from rawquery_workers.spec.credentials import Credentials


class BearerAuthenticator(OriginBoundAuth):
    def __init__(self, credentials: Credentials, *, base_url: str) -> None:
        super().__init__(base_url)
        if not credentials.token:
            raise missing_error("bearer", ["token"])
        self._header = f"Bearer {credentials.token}"

    def authenticated_flow(self, request: httpx.Request) -> Flow:
        request.headers["Authorization"] = self._header
        yield request
