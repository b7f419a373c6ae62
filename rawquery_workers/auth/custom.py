"""`custom`: an optional login call, then templated headers and query parameters.

The login (`pre_request`) renders its url, headers and JSON body from `{{auth.username}}`,
`{{auth.password}}` and `{{auth.token}}`, is sent to its own URL without any other auth,
and `extract` reads named values from its JSON answer (`response.data.token`). Each
request to `base_url`'s origin then gets the spec's `headers` and `params`, rendered from
the same auth names plus the extracted ones.

The login happens lazily, before the first request, and once more when a request is
answered 401 (the session expired); the retried request's second 401 is handed back to
the client. Templating substitutes values only (see `rawquery_workers.spec.templating`).

Extracted values are secrets: each joins the connection's redactor as soon as it is read,
so an API echoing a session token (into a next-page link, an error message) is masked, and
stripped from any paginator state that is stored or sent to a worker.
"""

from __future__ import annotations

import threading

import httpx
from pydantic import JsonValue

from rawquery_workers.auth.base import Flow, OriginBoundAuth, missing_error, safe_url
from rawquery_workers.errors import AuthError, RetriableError, SourceError
from rawquery_workers.http.client import error_for_status
from rawquery_workers.http.redact import Redactor
from rawquery_workers.spec.credentials import Credentials, flag_for
from rawquery_workers.spec.jsonpath import MISSING, get_path
from rawquery_workers.spec.models import CustomAuth, PreRequest
from rawquery_workers.spec.templating import render

Session = dict[str, str]


class CustomAuthenticator(OriginBoundAuth):
    requires_response_body = True  # the login response is parsed inside the flow

    def __init__(
        self,
        spec: CustomAuth,
        credentials: Credentials,
        *,
        base_url: str,
        redactor: Redactor | None = None,
    ) -> None:
        super().__init__(base_url)
        self._spec = spec
        self._names = credentials.template_names()
        if missing := sorted(n for n in spec.auth_names() if n not in self._names):
            raise missing_error("custom", missing)
        self._redactor = redactor if redactor is not None else Redactor()
        self._redactor.add_secrets(*credentials.secrets())
        self._session: Session | None = None
        self._lock = threading.Lock()

    def authenticated_flow(self, request: httpx.Request) -> Flow:
        has_login = self._spec.pre_request is not None
        if has_login and self._session is None:
            yield from self.login_flow(stale=None)
        session = self._session
        self._sign(request, session)
        response = yield request
        if response.status_code != 401 or not has_login:
            return
        yield from self.login_flow(stale=session)
        self._sign(request, self._session)
        yield request

    def login_flow(self, stale: Session | None) -> Flow:
        """Log in, unless another request already replaced the `stale` session."""
        pre = self._spec.pre_request
        assert pre is not None
        with self._lock:
            if self._session is not None and self._session is not stale:
                return
            response = yield self._login_request(pre)
            self._session = self._extract(pre, response)

    # --- pieces -------------------------------------------------------------------------

    def _sign(self, request: httpx.Request, session: Session | None) -> None:
        names = {**self._names, **(session or {})}
        for name, value in _render_all(self._spec.headers, names, "auth.headers").items():
            request.headers[name] = value
        params = _render_all(self._spec.params, names, "auth.params")
        if params:
            request.url = request.url.copy_merge_params(params)

    def _login_request(self, pre: PreRequest) -> httpx.Request:
        names = self._names
        url = str(render(pre.url, names, "auth.pre_request.url"))
        headers = {"Accept": "application/json"}
        headers.update(_render_all(pre.headers, names, "auth.pre_request.headers"))
        body: JsonValue = None
        if pre.body is not None:
            body = render(pre.body, names, "auth.pre_request.body")
        return httpx.Request(pre.method, url, headers=headers, json=body)

    def _extract(self, pre: PreRequest, response: httpx.Response) -> Session:
        where = f"custom auth login {pre.method} {safe_url(pre.url, self._redactor)}"
        if response.is_error:
            raise _login_error(where, response.status_code, pre)
        try:
            data = response.json()
        except ValueError:
            raise AuthError(
                f"{where} answered HTTP {response.status_code} with a body that is not JSON; "
                "check pre_request.url"
            ) from None
        session: Session = {}
        for name, path in pre.extract.items():
            value = get_path(data, path.removeprefix("response."))
            if value is MISSING or value is None or isinstance(value, dict | list):
                raise AuthError(
                    f"{where}: the response has no value at '{path}' "
                    f"(auth.pre_request.extract.{name}); check the path against the API's "
                    "login response"
                )
            session[name] = value if isinstance(value, str) else str(value)
            self._redactor.add_secrets(session[name])
        return session


def _login_error(where: str, status: int, pre: PreRequest) -> SourceError:
    if error_for_status(status, ()) is RetriableError:
        return RetriableError(f"{where} failed: HTTP {status}; try again later", status=status)
    flags = "/".join(sorted({flag_for(n) for n in pre.auth_names()})) or "pre_request"
    return AuthError(f"{where} was refused: HTTP {status}; check the connection's {flags}")


def _render_all(values: dict[str, str], names: dict[str, str], where: str) -> dict[str, str]:
    return {key: str(render(value, names, f"{where}.{key}")) for key, value in values.items()}
