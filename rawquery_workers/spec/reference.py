"""The spec field reference (docs/reference.md), generated from the spec models.

    python -m rawquery_workers.spec.reference > docs/reference.md

Every section is one model of `spec/models.py`: its docstring, then one row per field
with the field's type, whether it is required, its default and its `Field(description=...)`.
The auth and pagination sections are the members of those unions, in union order (a kind
added with `register_kind` too), each followed by its nested models (`auth.pre_request`).
A field without a description makes generation fail (a kind's `type` may go without:
its row then names the kind), so a new field cannot reach the reference (or pass
tests/test_docs_reference.py) undocumented.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from typing import Annotated, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from rawquery_workers.spec import models as m

Section = tuple[str, str, type[BaseModel]]  # (title, anchor path in a spec, model)


def sections() -> list[Section]:
    """The reference's sections, in order."""
    found: list[Section] = [("Top level", "", m.Spec), ("Streams", "streams[]", m.Stream)]
    for family, where in ((m.AuthKind, "auth"), (m.PaginationKind, "streams[].pagination")):
        for kind in m.kinds(family):
            found.append((f"{where.rsplit('.', 1)[-1]}: {kind.tag()}", where, kind))
            found += _nested(kind, where)
    found += [
        ("expand entries", "streams[].expand.FIELD", m.Expand),
        ("fields", "streams[].fields", m.Fields),
        ("rate_limit", "rate_limit", m.RateLimit),
    ]
    return found


def _nested(kind: type[m.Kind], where: str) -> list[Section]:
    """A kind's fields holding a model of their own: `auth.pre_request (custom auth)`."""
    family = where.rsplit(".", 1)[-1]
    found: list[Section] = []
    for name, info in kind.model_fields.items():
        inner = [a for a in typing.get_args(info.annotation) if a is not type(None)]
        model = inner[0] if len(inner) == 1 else info.annotation
        if inspect.isclass(model) and issubclass(model, BaseModel):
            path = f"{where}.{name}"
            found.append((f"{path} ({kind.tag()} {family})", path, model))
    return found


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
    for title, where, model in sections():
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
    """A field's `Field(description=...)`; a kind's `type` without one names the kind."""
    text = model.model_fields[name].description
    if not text and name == "type" and issubclass(model, m.Kind):
        text = json.dumps(model.tag()) + "."
    if not text:
        raise LookupError(
            f"{model.__name__}.{name} has no description: give it Field(description=...)"
        )
    return text


def type_name(tp: object) -> str:
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


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return ""
    return f"`{json.dumps(info.get_default(call_default_factory=True))}`"


if __name__ == "__main__":
    print(render_reference(), end="")
