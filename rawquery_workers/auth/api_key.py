"""`api_key`: `--auth-token` in one header or one query parameter."""

from __future__ import annotations

import httpx

from rawquery_workers.auth.base import Flow, OriginBoundAuth, missing_error
from rawquery_workers.spec.credentials import Credentials
from rawquery_workers.spec.models import ApiKeyAuth


class ApiKeyAuthenticator(OriginBoundAuth):
    def __init__(self, spec: ApiKeyAuth, credentials: Credentials, *, base_url: str) -> None:
        super().__init__(base_url)
        if not credentials.token:
            raise missing_error("api_key", ["token"])
        self._token = credentials.token
        self._header = spec.header
        self._query_param = spec.query_param

    def authenticated_flow(self, request: httpx.Request) -> Flow:
        if self._header is not None:
            request.headers[self._header] = self._token
        if self._query_param is not None:
            request.url = request.url.copy_set_param(self._query_param, self._token)
        yield request
