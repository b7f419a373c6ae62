"""docs/reference.md is generated from the spec models and must not drift from them."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

from pydantic import BaseModel

from rawquery_workers.spec import models as m
from rawquery_workers.spec.reference import description, render_reference, sections

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
REGENERATE = "python -m rawquery_workers.spec.reference > docs/reference.md"


def _members(union: object) -> set[type[BaseModel]]:
    inner = typing.get_args(union)[0]  # Annotated[A | B | ..., Field(discriminator=...)]
    return set(typing.get_args(inner))


def test_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text() == render_reference(), f"docs/reference.md is stale: {REGENERATE}"


def test_module_entry_point_prints_the_reference() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rawquery_workers.spec.reference"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    assert out == render_reference()


def test_every_kind_and_field_is_documented() -> None:
    documented = {model for _, _, model in sections()}
    assert _members(m.Auth) <= documented
    assert _members(m.Pagination) <= documented
    assert {m.Spec, m.Stream, m.RateLimit, m.Expand, m.Fields, m.PreRequest} <= documented
    for model in documented:
        for name in model.model_fields:
            assert description(model, name)
            assert f"| `{name}` |" in REFERENCE.read_text()
