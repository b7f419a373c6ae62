"""The connector spec: typed models, loading with readable errors, and its JSON Schema;
also the values a spec is filled with (credentials, `{{...}}` templates, dotted paths).

May import: errors, settings. Nothing else of rawquery's (every other layer uses it).
The names below load on first use: `rq --help` must not import pydantic.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rawquery_workers.spec.loading import load_spec_file, parse_spec, spec_to_json
    from rawquery_workers.spec.models import Spec, Stream
    from rawquery_workers.spec.schema import spec_json_schema

__all__ = ["Spec", "Stream", "load_spec_file", "parse_spec", "spec_json_schema", "spec_to_json"]
_HOMES = {
    "Spec": "models",
    "Stream": "models",
    "load_spec_file": "loading",
    "parse_spec": "loading",
    "spec_to_json": "loading",
    "spec_json_schema": "schema",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'rawquery_workers.spec' has no attribute {name!r}")
    return getattr(import_module(f"rawquery_workers.spec.{home}"), name)
