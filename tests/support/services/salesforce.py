"""Salesforce REST API: `GET /services/data/v59.0/query?q=SOQL` and the query locator
`GET /services/data/v59.0/query/{locator}` (developer.salesforce.com/docs/atlas.en-us.
api_rest.meta: resources_query, resources_query_more_results, headers_queryoptions,
errorcodes; SOQL reference: date formats and date literals), plus the OAuth 2.0 refresh
token flow `POST /services/oauth2/token`.

Followed from the docs:
- the answer `{"totalSize", "done", "records": [...], "nextRecordsUrl"}` where
  `nextRecordsUrl` is a path relative to the instance,
  `/services/data/v59.0/query/01gD0000002HU6KIAW-2000`, absent when `done` is true;
- records carry `attributes` `{"type", "url"}` and only the fields named in SELECT;
- batches of 2000 records by default; the `Sforce-Query-Options: batchSize=N` header asks
  for N between 200 and 2000;
- SOQL here: `SELECT f, ... FROM Account [WHERE f op value [AND ...]] [ORDER BY f [ASC|
  DESC]] [LIMIT n]`; date-time literals are unquoted ISO 8601
  (`2024-01-01T00:00:00Z`, `2024-01-01T00:00:00+00:00`, `2024-01-01T00:00:00.000+0000`);
  a quoted one is 400 `INVALID_QUERY_FILTER_OPERATOR`, anything unparseable is 400
  `MALFORMED_QUERY`, an unknown field 400 `INVALID_FIELD`; errors are a JSON array
  `[{"message": ..., "errorCode": ...}]`;
- timestamps look like `2024-01-15T10:30:00.000+0000`;
- a missing or wrong access token is 401 `[{"message": "Session expired or invalid",
  "errorCode": "INVALID_SESSION_ID"}]`; the token endpoint answers a refresh-token grant
  with `{"access_token", "instance_url", "id", "token_type": "Bearer", "issued_at",
  "signature"}` (no new refresh token, no `expires_in`): a session ends when Salesforce
  says so (`session_calls`: after that many API calls every issued token is invalid).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.services import ServiceFake, parse_iso, random_id

VERSION = "v59.0"
QUERY_PATH = f"/services/data/{VERSION}/query"
TOKEN_PATH = "/services/oauth2/token"
FIELDS = {
    "Id",
    "Name",
    "Industry",
    "AnnualRevenue",
    "NumberOfEmployees",
    "CreatedDate",
    "LastModifiedDate",
    "IsDeleted",
}
DATETIME_FIELDS = {"CreatedDate", "LastModifiedDate"}
_LITERAL = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})"
_SOQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>\w+)(?:\s+(?P<dir>ASC|DESC))?)?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(r"^\s*(?P<field>\w+)\s*(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>.+?)\s*$")


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def sf_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}+0000"
    )


class Salesforce(ServiceFake):
    prefix = "/services/"

    def __init__(
        self,
        server: ApiServer,
        client_id: str = "3MVG9FakeConsumerKey",
        client_secret: str = "FakeConsumerSecret0123",
        refresh_token: str = "5Aep861FakeRefreshToken",
        accounts: int = 450,
        seed: int = 17,
    ) -> None:
        super().__init__(server, seed=seed, start=datetime(2024, 1, 3, 12, 0, tzinfo=UTC))
        self.client_id, self.client_secret = client_id, client_secret
        self.refresh_token = refresh_token
        self.access_tokens: list[str] = []
        self.expired: list[str] = []
        self.session_calls: int | None = None  # API calls before the session expires
        self.accounts: list[dict[str, Any]] = []
        self.locators: dict[str, tuple[list[dict[str, Any]], int, int]] = {}
        for _ in range(accounts):
            self.add_account()
        server.route(QUERY_PATH, self._query)
        server.route(TOKEN_PATH, self._token, methods=("POST",))

    @property
    def token_url(self) -> str:
        return f"{self.server.url}{TOKEN_PATH}"

    # --- data -----------------------------------------------------------------------------

    def add_account(self) -> dict[str, Any]:
        rng = self.random
        n = len(self.accounts) + 1
        created = self.tick(rng.choice([0, 1, 30, 600, 3600]))
        account = {
            "Id": "001" + random_id(rng, 15),
            "Name": f"Account {n} Inc.",
            "Industry": rng.choice(["Technology", "Finance", "Retail", None]),
            "AnnualRevenue": rng.choice([None, 1.5e6, 2.25e7, 990000.0, 12345678.9]),
            "NumberOfEmployees": rng.choice([None, 12, 250, 4000]),
            "CreatedDate": sf_time(created),
            "LastModifiedDate": sf_time(created + timedelta(seconds=rng.randint(0, 3))),
            "IsDeleted": False,
        }
        self.accounts.append(account)
        return account

    def latest_update(self) -> datetime:
        return max(_moment(a["LastModifiedDate"]) for a in self.accounts)

    def mutate(self) -> None:
        """Accounts are edited (LastModifiedDate moves on), new accounts are created."""
        self.now = max(self.now, self.latest_update()) + timedelta(hours=1)
        for account in self.random.sample(self.accounts, 60):
            account["Industry"] = "Healthcare"
            account["AnnualRevenue"] = 42000000.0
            account["LastModifiedDate"] = sf_time(self.tick(self.random.choice([0, 1, 45])))
        for _ in range(40):
            self.add_account()

    # --- the API --------------------------------------------------------------------------

    def _token(self, request: RecordedRequest) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "refresh_token":
            return Reply(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
                400,
            )
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return Reply(
                {"error": "invalid_client_id", "error_description": "client identifier invalid"},
                400,
            )
        if form.get("refresh_token") != self.refresh_token:
            return Reply(
                {"error": "invalid_grant", "error_description": "expired access/refresh token"}, 400
            )
        token = "00D" + random_id(self.random, 12) + "!" + random_id(self.random, 40)
        self.access_tokens.append(token)
        return Reply(
            {
                "access_token": token,
                "signature": random_id(self.random, 43),
                "scope": "api refresh_token",
                "instance_url": self.server.url,
                "id": f"{self.server.url}/id/00DFake/005Fake",
                "token_type": "Bearer",
                "issued_at": str(int(self.now.timestamp() * 1000)),
            }
        )

    def _authorized(self, request: RecordedRequest) -> Reply | None:
        auth = request.header("authorization") or ""
        if auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in self.access_tokens:
            if self.session_calls is None:
                return None
            self.session_calls -= 1
            if self.session_calls >= 0:
                return None
            self.session_calls = None
            self.expired += self.access_tokens
            self.access_tokens = []
        return Reply(
            [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401
        )

    def _batch_size(self, request: RecordedRequest) -> int:
        options = request.header("sforce-query-options") or ""
        match = re.search(r"batchSize\s*=\s*(\d+)", options)
        return min(max(int(match.group(1)), 200), 2000) if match else 2000

    def _query(self, request: RecordedRequest) -> Reply:
        if error := self._authorized(request):
            return error
        soql = request.params.get("q")
        if soql is None:
            return Reply(
                [{"message": "A query string has to be specified", "errorCode": "MALFORMED_QUERY"}],
                400,
            )
        try:
            fields, records = self.run(soql)
        except SoqlError as exc:
            return Reply([{"message": str(exc), "errorCode": exc.code}], 400)
        projected = [self._projected(r, fields) for r in records]
        return self._batch(projected, 0, self._batch_size(request))

    def _batch(self, records: list[dict[str, Any]], start: int, size: int) -> Reply:
        chunk = records[start : start + size]
        end = start + len(chunk)
        body: dict[str, Any] = {"totalSize": len(records), "done": end >= len(records)}
        if end < len(records):
            locator = f"01g{random_id(self.random, 12)}AAW-{end}"
            self.locators[locator] = (records, end, size)
            path = f"{QUERY_PATH}/{locator}"
            self.server.route(path, lambda r, loc=locator: self._more(r, loc))
            body["nextRecordsUrl"] = path
        body["records"] = chunk
        return Reply(body)

    def _more(self, request: RecordedRequest, locator: str) -> Reply:
        if error := self._authorized(request):
            return error
        if request.query:
            return Reply(
                [
                    {
                        "message": "The query locator URL takes no parameters",
                        "errorCode": "MALFORMED_QUERY",
                    }
                ],
                400,
            )
        if locator not in self.locators:
            return Reply(
                [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}], 400
            )
        records, start, size = self.locators[locator]
        return self._batch(records, start, size)

    def _projected(self, record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": "Account",
                "url": f"/services/data/{VERSION}/sobjects/Account/{record['Id']}",
            }
        }
        out.update({f: record[f] for f in fields})
        return out

    # --- SOQL -----------------------------------------------------------------------------

    def run(self, soql: str) -> tuple[list[str], list[dict[str, Any]]]:
        match = _SOQL.match(soql)
        if not match:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token in: {soql[:80]}")
        if match.group("object") != "Account":
            raise SoqlError(
                "INVALID_TYPE",
                f"sObject type '{match.group('object')}' is not supported.",
            )
        fields = [f.strip() for f in match.group("fields").split(",")]
        for name in fields:
            if name not in FIELDS:
                raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity 'Account'.")
        records = [a for a in self.accounts if not a["IsDeleted"]]
        if where := match.group("where"):
            for condition in re.split(r"\s+AND\s+", where, flags=re.IGNORECASE):
                keep = _condition(condition)
                records = [r for r in records if keep(r)]
        if order := match.group("order"):
            if order not in FIELDS:
                raise SoqlError("INVALID_FIELD", f"No such column '{order}' on entity 'Account'.")
            descending = (match.group("dir") or "ASC").upper() == "DESC"
            records.sort(key=lambda r: (r[order] is None, r[order] or 0), reverse=descending)
        if limit := match.group("limit"):
            records = records[: int(limit)]
        return fields, records


def _moment(text: str) -> datetime:
    moment = parse_iso(text)
    assert moment is not None, text
    return moment


def _condition(text: str) -> Callable[[dict[str, Any]], bool]:
    match = _CONDITION.match(text)
    if not match:
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text.strip()[:40]}'")
    field, op, raw = match.group("field"), match.group("op"), match.group("value")
    if field not in FIELDS:
        raise SoqlError("INVALID_FIELD", f"No such column '{field}' on entity 'Account'.")
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
    }
    if field in DATETIME_FIELDS:
        if raw[:1] in "'\"":
            raise SoqlError(
                "INVALID_QUERY_FILTER_OPERATOR",
                f"value of filter criterion for field '{field}' must be of type dateTime and "
                "should not be enclosed in quotes",
            )
        if not re.fullmatch(_LITERAL, raw):
            raise SoqlError("MALFORMED_QUERY", f"line 1:0 no viable alternative at '{raw}'")
        moment = _moment(raw)
        return lambda r: r[field] is not None and compare[op](_moment(r[field]), moment)
    if raw[:1] == "'" and raw[-1:] == "'":
        value: Any = raw[1:-1]
    else:
        try:
            value = float(raw)
        except ValueError as exc:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{raw}'") from exc
    return lambda r: r[field] is not None and compare[op](r[field], value)
