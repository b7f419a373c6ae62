"""A stream's first-page request, before pagination adds anything: URL, params, headers,
body, with `{{cursor}}` and `{{parent.COLUMN}}` rendered.

REST: `stream.method` to base_url + endpoint, the stream's `params` (a list value is sent
as repeated keys), the spec's and the stream's `headers`, and `body` as JSON. GraphQL:
POST to base_url + (endpoint or "/graphql") with `{"query", "variables"}`.

`{{cursor}}` is the saved cursor (or `cursor_start` on a first sync) written in the stream's
`cursor_format`. A value that is only `{{cursor}}` is left out when there is neither; a
`{{cursor}}` inside a longer value always has `cursor_start` (spec validation). In a body,
a value that is exactly one placeholder keeps its JSON type (an epoch cursor stays a
number, a parent id stays an integer). A parent value in the endpoint is URL-quoted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import cast
from urllib.parse import quote, urljoin

from pydantic import JsonValue

from rawquery_workers.errors import SpecError
from rawquery_workers.http.client import join_url
from rawquery_workers.http.redact import Redactor
from rawquery_workers.paginate.base import RequestSpec
from rawquery_workers.spec.models import ParamValues, Spec, Stream
from rawquery_workers.spec.origin import Origin, same_origin
from rawquery_workers.spec.templating import is_only, placeholders, render

Parent = Mapping[str, JsonValue]  # a parent row: column -> value (JSON-able)
_MILLIS_FROM = 10**11  # a number this large is epoch milliseconds, not seconds


def base_request(
    spec: Spec, stream: Stream, cursor: str | None = None, parent: Parent | None = None
) -> RequestSpec:
    """The stream's first-page request; `cursor` is the saved cursor the sync filters with
    (None: a first sync), `parent` the parent row of a child request."""
    value = cursor if cursor is not None else stream.cursor_start
    written = cursor_written(value, stream.cursor_format) if value is not None else None
    names = _names(written, parent)
    where = f"stream {stream.name}"
    if spec.type == "graphql":
        url = endpoint_url(spec.base_url, stream.endpoint or "/graphql", stream.name)
        variables = _rendered(stream.variables, names, f"{where} variables")
        return RequestSpec("POST", url, {}, {"query": stream.query, "variables": variables})
    endpoint = _rendered_endpoint(stream.endpoint or "", names, where)
    url = endpoint_url(spec.base_url, endpoint, stream.name)
    params: dict[str, ParamValues] = {
        key: _param(rendered)
        for key, rendered in _rendered(
            cast(dict[str, JsonValue], stream.params), names, f"{where} params"
        ).items()
    }
    headers = {
        key: str(rendered)
        for key, rendered in _rendered(spec.headers_for(stream), names, f"{where} headers").items()
    }
    raw = _raw_values(written, stream.cursor_format, parent)
    body = _body(stream.body, names, raw, f"{where} body") if stream.body is not None else None
    return RequestSpec(stream.method, url, params, body, headers)


def endpoint_url(base_url: str, endpoint: str, stream_name: str = "stream") -> str:
    """base_url + endpoint; an absolute endpoint is allowed only on base_url's origin."""
    if "://" not in endpoint and not endpoint.startswith("//"):
        return join_url(base_url, endpoint)
    url = urljoin(base_url, endpoint)
    if not same_origin(url, base_url):
        raise SpecError(
            f"stream {stream_name}: endpoint '{Redactor().redact_url(url)}' is not on "
            f"base_url's origin ({Origin.of(base_url)}); use a path relative to base_url "
            "(credentials are only ever sent to base_url's origin)"
        )
    return url


def cursor_written(value: str, fmt: str) -> str:
    """A cursor (saved, or `cursor_start`) as `cursor_format` writes it into a request.

    Timestamps and dates (ISO 8601; naive ones are UTC) are converted; a number is an epoch
    time: kept as it is for the epoch formats, read as seconds (milliseconds when it is that
    large) for the others. Other cursors (ids, versions) are sent as they are."""
    if fmt == "iso8601":
        return value
    when = _instant(value)
    if when is None:
        return value
    if fmt == "epoch_seconds":
        return value if _is_number(value) else str(int(when.timestamp()))
    if fmt == "epoch_millis":
        return value if _is_number(value) else str(int(when.timestamp() * 1000))
    if fmt == "date":
        return when.date().isoformat()
    return when.strftime(fmt)


def _instant(value: str) -> datetime | None:
    if _is_number(value):
        number = float(value)
        return datetime.fromtimestamp(number / 1000 if number >= _MILLIS_FROM else number, UTC)
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _names(cursor: str | None, parent: Parent | None) -> dict[str, str]:
    names = {"cursor": cursor} if cursor is not None else {}
    for column, value in (parent or {}).items():
        names[f"parent.{column}"] = value if isinstance(value, str) else _text(value)
    return names


def _text(value: JsonValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _rendered(
    values: Mapping[str, JsonValue], names: Mapping[str, str], where: str
) -> dict[str, JsonValue]:
    """`values` rendered; an entry using `{{cursor}}` is left out when there is no cursor."""
    out: dict[str, JsonValue] = {}
    for key, value in values.items():
        if "cursor" in placeholders(value) and "cursor" not in names:
            continue
        out[key] = render(value, names, f"{where}.{key}")
    return out


def _param(value: JsonValue) -> ParamValues:
    if isinstance(value, list):
        return [item if isinstance(item, str | int | float) else _text(item) for item in value]
    return value if isinstance(value, str | int | float) else _text(value)


def _rendered_endpoint(endpoint: str, names: Mapping[str, str], where: str) -> str:
    if "{{" not in endpoint:
        return endpoint
    quoted = {k: quote(v, safe="") for k, v in names.items() if k.startswith("parent.")}
    return str(render(endpoint, quoted, f"{where} endpoint"))


def _raw_values(cursor: str | None, fmt: str, parent: Parent | None) -> dict[str, JsonValue]:
    """Each placeholder's value with its JSON type, for a body value that is exactly it."""
    raw: dict[str, JsonValue] = {f"parent.{k}": v for k, v in (parent or {}).items()}
    if cursor is not None:
        epoch = fmt in ("epoch_seconds", "epoch_millis") and cursor.lstrip("-").isdigit()
        raw["cursor"] = int(cursor) if epoch else cursor
    return raw


def _body(
    value: JsonValue, names: Mapping[str, str], raw: Mapping[str, JsonValue], where: str
) -> JsonValue:
    """A body rendered; a key whose value is only a `{{cursor}}` without a cursor is left
    out, and a value that is exactly one placeholder keeps its JSON type."""
    if isinstance(value, dict):
        return {
            key: _body(item, names, raw, f"{where}.{key}")
            for key, item in value.items()
            if not (is_only(item, "cursor") and "cursor" not in names)
        }
    if isinstance(value, list):
        return [_body(item, names, raw, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, str) and "{{" in value:
        used = list(placeholders(value))
        if len(used) == 1 and is_only(value, used[0]) and used[0] in raw:
            return raw[used[0]]
        return render(value, names, where)
    return value
