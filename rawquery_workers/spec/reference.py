"""The spec field reference (docs/reference.md), generated from the spec models.

    python -m rawquery_workers.spec.reference > docs/reference.md

Every section is one model of `spec/models.py`: its docstring, then one row per field
with the field's type, whether it is required, its default and its description. A
description is the field's own `Field(description=...)` when it has one, else the entry
in `DESCRIPTIONS` below; a field with neither makes generation fail, so a new field
cannot reach the reference (or pass tests/test_docs_reference.py) undocumented.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from rawquery_workers.spec import models as m

# (section title, anchor path in a spec, model); the order of the reference.
SECTIONS: list[tuple[str, str, type[BaseModel]]] = [
    ("Top level", "", m.Spec),
    ("Streams", "streams[]", m.Stream),
    ("auth: none", "auth", m.NoAuth),
    ("auth: api_key", "auth", m.ApiKeyAuth),
    ("auth: bearer", "auth", m.BearerAuth),
    ("auth: basic", "auth", m.BasicAuth),
    ("auth: oauth2", "auth", m.OAuth2Auth),
    ("auth: custom", "auth", m.CustomAuth),
    ("auth.pre_request (custom auth)", "auth.pre_request", m.PreRequest),
    ("pagination: offset", "streams[].pagination", m.OffsetPagination),
    ("pagination: cursor", "streams[].pagination", m.CursorPagination),
    ("pagination: page_number", "streams[].pagination", m.PageNumberPagination),
    ("pagination: link_header", "streams[].pagination", m.LinkHeaderPagination),
    ("pagination: next_url", "streams[].pagination", m.NextUrlPagination),
    ("expand entries", "streams[].expand.FIELD", m.Expand),
    ("fields", "streams[].fields", m.Fields),
    ("rate_limit", "rate_limit", m.RateLimit),
]

DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("Spec", "version"): 'The spec format version: always "1".',
    ("Spec", "base_url"): "Absolute http(s) URL every endpoint is relative to. Credentials "
    "are only ever sent to its origin (scheme, host, port).",
    ("Spec", "type"): '"rest" or "graphql" (streams then use `query`, POSTed to '
    '`endpoint`, default "/graphql").',
    ("Spec", "auth"): "How requests are authenticated; one of the auth kinds below, chosen "
    "by `type`.",
    ("Spec", "streams"): "The endpoints to sync; each lands in the table CONNECTION.NAME.",
    ("Spec", "rate_limit"): "Request budget and retries, shared by all streams of the "
    "connection on all workers.",
    ("Stream", "name"): "Table name: letters, digits and _, not starting with a digit. "
    "Expanded arrays land in NAME_FIELD.",
    ("Stream", "endpoint"): 'Path relative to base_url (e.g. "/users"); required for REST. '
    "An absolute URL must be on base_url's origin.",
    ("Stream", "method"): "HTTP method of a REST stream.",
    ("Stream", "data_path"): 'Dotted path to the array of records (e.g. "data.results"; '
    '"data.-1.id" counts from the end). Absent: the body is the array (an object is one '
    "record).",
    ("Stream", "primary_key"): "Columns identifying a record: one row per key after any "
    "sequence of syncs (newest wins). Needed by `expand`.",
    ("Stream", "cursor_field"): "Column whose greatest value is saved after each sync; "
    "later syncs keep records at or after it (incremental).",
    ("Stream", "pagination"): "How to get the next page; one of the pagination kinds below. "
    "Absent: a single page.",
    ("Stream", "params"): "Static query parameters. A value may use `{{cursor}}` (the saved "
    "cursor); a parameter whose value is only `{{cursor}}` is left out on a first sync.",
    ("Stream", "query"): "GraphQL query (GraphQL specs only).",
    ("Stream", "variables"): "GraphQL variables (GraphQL specs only); may use `{{cursor}}`.",
    ("Stream", "sync_modes"): 'Allowed modes: ["full_refresh"] always replaces the table; '
    "absent or with incremental: incremental when `cursor_field` is set.",
    ("Stream", "flatten"): 'Nested objects to flatten, by field path: "prefix" '
    '(address_city), "lift" (city) or "json" (default: kept as a JSON string).',
    ("Stream", "expand"): "Arrays to move into child tables NAME_FIELD, by field name.",
    ("Stream", "fields"): "Columns to keep (`include`) and to rename (`rename`, applied last).",
    ("Stream", "types"): "Column types overriding inference: string, integer, float, "
    "boolean, timestamp, date, json.",
    ("NoAuth", "type"): '"none".',
    ("ApiKeyAuth", "type"): '"api_key".',
    ("ApiKeyAuth", "header"): "Header that carries --auth-token (exactly one of header, "
    "query_param).",
    ("ApiKeyAuth", "query_param"): "Query parameter that carries --auth-token.",
    ("BearerAuth", "type"): '"bearer".',
    ("BasicAuth", "type"): '"basic".',
    ("OAuth2Auth", "type"): '"oauth2". Credentials: --client-id, --client-secret and (for '
    "refresh_token) --refresh-token.",
    ("OAuth2Auth", "token_url"): "Token endpoint (absolute URL).",
    ("OAuth2Auth", "refresh_url"): "Endpoint for the refresh_token grant, when it differs "
    "from token_url.",
    ("OAuth2Auth", "grant_type"): '"refresh_token" (rotated refresh tokens are stored '
    'encrypted at once) or "client_credentials".',
    ("OAuth2Auth", "scopes"): "Scopes requested, sent space-separated.",
    ("CustomAuth", "type"): '"custom".',
    ("CustomAuth", "pre_request"): "Optional login call made before the first request and "
    "again after a 401.",
    ("CustomAuth", "headers"): "Headers added to every request; values may use "
    "`{{auth.username}}`, `{{auth.password}}`, `{{auth.token}}` and extracted names.",
    ("CustomAuth", "params"): "Query parameters added to every request; same templates as headers.",
    ("PreRequest", "url"): "Login URL (absolute); may use the `{{auth.*}}` templates.",
    ("PreRequest", "method"): "HTTP method of the login call.",
    ("PreRequest", "body"): "JSON body of the login call; string values may use the "
    "`{{auth.*}}` templates.",
    ("PreRequest", "headers"): "Headers of the login call.",
    ("PreRequest", "extract"): 'Names to read from the login answer: {"session_token": '
    '"response.token"} makes `{{session_token}}` available.',
    ("OffsetPagination", "type"): '"offset".',
    ("OffsetPagination", "param"): "Query parameter of the offset.",
    ("OffsetPagination", "limit_param"): "Query parameter of the page size (null: not sent).",
    ("OffsetPagination", "page_size"): "Records per page; a shorter page is the last.",
    ("OffsetPagination", "start_offset"): "Offset of the first page.",
    ("CursorPagination", "type"): '"cursor".',
    ("CursorPagination", "cursor_path"): "Dotted path of the next-page token in the body "
    '(e.g. "paging.next.after", "data.-1.id").',
    ("CursorPagination", "param"): "Query parameter that carries the token (REST; required).",
    ("CursorPagination", "cursor_variable"): "GraphQL variable that carries the token "
    "(GraphQL; required).",
    ("CursorPagination", "has_more_path"): "Dotted path of a boolean; false ends the stream.",
    ("PageNumberPagination", "type"): '"page_number".',
    ("PageNumberPagination", "param"): "Query parameter of the page number.",
    ("PageNumberPagination", "page_size_param"): "Query parameter of the page size (needs "
    "page_size).",
    ("PageNumberPagination", "page_size"): "Records per page; a shorter page is the last.",
    ("PageNumberPagination", "start_page"): "Number of the first page.",
    ("LinkHeaderPagination", "type"): '"link_header".',
    ("LinkHeaderPagination", "rel"): "The link relation to follow.",
    ("NextUrlPagination", "type"): '"next_url".',
    ("NextUrlPagination", "next_url_path"): "Dotted path of the next page's URL (absolute or "
    "relative) in the body; missing, null or empty ends the stream.",
    ("Expand", "primary_key"): "The child table's primary key (a column or a list).",
    ("Expand", "parent_key"): "Name of the child column holding the parent's primary key.",
    ("Fields", "include"): "Columns to keep (names after flatten; primary-key columns are "
    "always kept). A child's as FIELD.column.",
    ("Fields", "rename"): "Old name -> new name, applied last. A child's as FIELD.column.",
    ("RateLimit", "requests_per_second"): "Average request rate (may be fractional); absent: "
    "no cap.",
    ("RateLimit", "burst"): "Requests allowed at once; default one second's worth (at least 1).",
    ("RateLimit", "retry_on"): "HTTP statuses retried with backoff.",
    ("RateLimit", "backoff"): '"exponential" (with full jitter), "linear" or "constant".',
    ("RateLimit", "max_retries"): "Retries after the first attempt.",
    ("RateLimit", "respect_retry_after"): "Wait as long as the server's Retry-After says.",
    ("RateLimit", "backoff_base"): "Seconds: the first backoff wait; each kind grows from it.",
    ("RateLimit", "max_wait"): "Seconds: the longest single wait, Retry-After included.",
}

_HEADER = """# Connector spec reference

Generated from `rawquery_workers/spec/models.py` by
`python -m rawquery_workers.spec.reference > docs/reference.md`; do not edit by hand
(tests/test_docs_reference.py fails when this file is stale). The user guide is
[guide.md](guide.md); how records become rows is in [transform.md](transform.md).

Unknown keys are errors. Paths below use `streams[]` for any stream entry.
"""


def render_reference() -> str:
    """The whole reference as Markdown."""
    parts = [_HEADER]
    for title, where, model in SECTIONS:
        parts.append(_section(title, where, model))
    return "\n".join(parts).rstrip("\n") + "\n"


def _section(title: str, where: str, model: type[BaseModel]) -> str:
    doc = inspect.cleandoc(model.__doc__ or "") if model.__doc__ else ""
    if model is m.StrictModel or doc.startswith("!!!"):
        doc = ""
    lines = [f"## {title}", ""]
    if where:
        lines += [f"At `{where}`.", ""]
    if doc and "Usage docs:" not in doc:
        lines += [" ".join(doc.split()), ""]
    lines += ["| field | type | required | default | description |", "|---|---|---|---|---|"]
    for name, info in model.model_fields.items():
        required = "yes" if info.is_required() else ""
        cells = [f"`{name}`", type_name(info.annotation), required, _default(info)]
        cells.append(description(model, name))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def description(model: type[BaseModel], name: str) -> str:
    info = model.model_fields[name]
    text = info.description or DESCRIPTIONS.get((model.__name__, name))
    if not text:
        raise LookupError(
            f"{model.__name__}.{name} has no description: add Field(description=...) in "
            "spec/models.py or an entry in spec/reference.py DESCRIPTIONS"
        )
    return text


def type_name(tp: Any) -> str:
    """A reader's name for a field's type (`list of string`, `"rest" or "graphql"`)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " or ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        if kept and all(inspect.isclass(a) and issubclass(a, BaseModel) for a in kept):
            return "object" if len(kept) == 1 else "object (one of the kinds below)"
        return " or ".join(dict.fromkeys(type_name(a) for a in kept))
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"object of {type_name(args[1])}"
    if inspect.isclass(tp) and issubclass(tp, BaseModel):
        return "object"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if tp in names:
        return names[tp]
    return "any JSON value"


def _default(info: Any) -> str:
    if info.is_required():
        return ""
    if info.default_factory is not None:
        value = info.default_factory()
    elif info.default is PydanticUndefined:
        return ""
    else:
        value = info.default
    return f"`{json.dumps(value)}`"


if __name__ == "__main__":
    print(render_reference(), end="")
