"""`fields.include`, `fields.rename` and `types` as they apply to one table.

The parent table reads them as written. A child table (expanded field FIELD) reads
`FIELD.col` entries of include/rename/types, and also plain `types` entries (a field of the
same name is usually of the same type); plain include/rename entries are the parent's.
Primary-key columns are always kept, whatever `include` says (the sink needs them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from rawquery_workers.spec.models import ColumnType, Stream
from rawquery_workers.transform.flatten import FlatColumn, folded, free_name, quoted

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class FieldRules:
    include: frozenset[str] | None
    rename: Mapping[str, str]
    types: Mapping[str, ColumnType]

    @classmethod
    def for_stream(cls, stream: Stream) -> FieldRules:
        fields = stream.fields
        include = frozenset(fields.include) if fields and fields.include is not None else None
        return cls(include, dict(fields.rename) if fields else {}, dict(stream.types))

    @classmethod
    def for_child(cls, stream: Stream, field: str) -> FieldRules:
        parent = cls.for_stream(stream)
        include = None
        if parent.include is not None:
            include = frozenset(_scoped(dict.fromkeys(parent.include), field)) or None
        types = {**parent.types, **_scoped(parent.types, field)}
        return cls(include, _scoped(parent.rename, field), types)

    def declared(self, name: str) -> ColumnType | None:
        return self.types.get(name)

    def select(self, columns: list[FlatColumn], keys: Iterable[str]) -> list[FlatColumn]:
        """The included columns (all when there is no include), keys always."""
        if self.include is None:
            return columns
        keep = self.include | set(keys)
        return [c for c in columns if c.name in keep]

    def final_names(
        self, names: list[str], reserved: Iterable[str] = (), existing: Iterable[str] = ()
    ) -> tuple[dict[str, str], dict[str, str]]:
        """name -> final name, and name -> why it is not the name asked for.

        A renamed column takes its new name; names are compared ignoring case (`folded`).
        A column whose name is taken already (by a renamed column, a `reserved` one, or
        another renamed column before it) gets `_2`, `_3`, ...; so does one whose name is a
        case variant of a column the table has (`existing`): the table would hold both."""
        holders = {folded(r): r for r in reserved}
        in_table = list(existing)
        exact = frozenset(in_table)
        table = {folded(e): e for e in reversed(in_table)}  # the first of case variants
        targets = {n: self.rename.get(n, n) for n in names}
        taken = {folded(t) for t in targets.values()} | set(holders)
        final: dict[str, str] = {}
        clashes: dict[str, str] = {}
        renamed_first = sorted(names, key=lambda n: n not in self.rename)
        for name in renamed_first:
            target = targets[name]
            key = folded(target)
            if key in holders:
                clashes[name] = f"it collides with column {quoted(holders[key])}"
            elif target not in exact and key in table:
                clashes[name] = f"the table has column {quoted(table[key])}"
            if name in clashes:
                target = free_name(target, taken)
            holders[folded(target)] = final[name] = target
        return {n: final[n] for n in names}, clashes


def _scoped(mapping: Mapping[str, V], field: str) -> dict[str, V]:
    start = field + "."
    return {k[len(start) :]: v for k, v in mapping.items() if k.startswith(start)}
