"""The JSON Schema (draft 2020-12) of the connector spec, for editors and other tools.

It is generated from the pydantic models, so it always matches what `parse_spec` accepts
structurally, and its descriptions are the models' own (docstrings and `Field(description=
...)`, the same text as docs/reference.md). The cross-field rules (a GraphQL stream needs
`query`, `expand` needs a `primary_key`, ...) are not expressible here: `rq spec validate`
checks those too.
"""

from __future__ import annotations

from pydantic import JsonValue

from rawquery_workers.spec.models import Spec

DRAFT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "rawquery connector spec (version 1)"
DESCRIPTION = (
    "A declarative description of an HTTP or GraphQL API for rawquery-workers: base URL, "
    "authentication, streams (endpoints, pagination, transformations) and rate limits. "
    "Check a spec with `rq spec validate FILE`."
)


def spec_json_schema() -> dict[str, JsonValue]:
    """The spec's JSON Schema, with `$schema`, `title` and `description` set."""
    body = Spec.model_json_schema(mode="validation")
    body.pop("title", None)
    body.pop("description", None)
    return {"$schema": DRAFT, "title": TITLE, "description": DESCRIPTION, **body}
