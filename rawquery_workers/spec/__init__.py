"""The connector spec: typed models, loading with readable errors, and its JSON Schema."""

from rawquery_workers.spec.loading import load_spec_file, parse_spec, spec_to_json
from rawquery_workers.spec.models import Spec, Stream
from rawquery_workers.spec.schema import spec_json_schema

__all__ = ["Spec", "Stream", "load_spec_file", "parse_spec", "spec_json_schema", "spec_to_json"]
