"""The JSON Schema (draft 2020-12) of the connector spec, for editors and other tools.

It is generated from the pydantic models, so it always matches what `parse_spec` accepts
structurally; the descriptions below only annotate it. The cross-field rules (a GraphQL
stream needs `query`, `expand` needs a `primary_key`, ...) are not expressible here:
`rq spec validate` checks those too.
"""

from __future__ import annotations

from typing import Any

from rawquery_workers.spec.models import Spec

DRAFT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "rawquery connector spec (version 1)"
DESCRIPTION = (
    "A declarative description of an HTTP or GraphQL API for rawquery-workers: base URL, "
    "authentication, streams (endpoints, pagination, transformations) and rate limits. "
    "Check a spec with `rq spec validate FILE`."
)

# Property descriptions by model ("Spec" is the top level), as the product doc words them.
_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "Spec": {
        "version": 'Always "1".',
        "base_url": "API base URL (absolute http or https).",
        "type": '"rest" (default) or "graphql".',
        "auth": "Authentication; credentials come from `rq connect` flags, never the spec.",
        "streams": "The endpoints/resources to sync; each becomes the table CONNECTION.NAME.",
        "rate_limit": "Request throttling, retries and backoff, shared by all streams.",
    },
    "Stream": {
        "name": "Table name in rawquery: letters, digits and _, not starting with a digit.",
        "endpoint": "URL path (REST, required) or the GraphQL path (defaults to /graphql).",
        "method": "HTTP method of a REST stream.",
        "data_path": "Dotted path to the record array (e.g. data.results); absent: the body.",
        "primary_key": "Field names that identify a record (one row per key).",
        "cursor_field": "Field for incremental sync (e.g. updatedAt).",
        "pagination": "Pagination; absent means a single-page response.",
        "params": "Query parameters; a value may use {{cursor}} (the saved cursor).",
        "query": "GraphQL query string (GraphQL specs only).",
        "variables": "GraphQL variables; a value may use {{cursor}}.",
        "sync_modes": "Allowed sync modes: full_refresh and/or incremental.",
        "flatten": "Nested objects: prefix (address_city), lift (keys moved up) or json.",
        "expand": "Arrays expanded into child tables STREAM_FIELD; needs primary_key.",
        "fields": "include: the columns to keep; rename: old -> new name (applied last).",
        "types": "Column type overrides: string, integer, float, boolean, timestamp, date, json.",
    },
    "RateLimit": {
        "requests_per_second": "Request budget per connection (may be fractional).",
        "burst": "Requests allowed at once (default: one second's worth, at least 1).",
        "retry_on": "HTTP statuses retried (default 429, 500, 502, 503, 504).",
        "max_retries": "Retries after the first attempt (default 5).",
        "respect_retry_after": "Wait as long as a Retry-After header says (default true).",
    },
}


def spec_json_schema() -> dict[str, Any]:
    """The spec's JSON Schema, with `$schema`, `title` and `description` set."""
    body = Spec.model_json_schema(mode="validation")
    body.pop("title", None)
    body.pop("description", None)
    for model, described in _DESCRIPTIONS.items():
        node = body if model == "Spec" else body["$defs"][model]
        for name, text in described.items():
            node["properties"][name].setdefault("description", text)
    return {"$schema": DRAFT, "title": TITLE, "description": DESCRIPTION, **body}
