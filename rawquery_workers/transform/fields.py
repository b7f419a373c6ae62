"""`fields.include`, `fields.rename` and `types` as they apply to one table.

The parent table reads them as written. A child table (expanded field FIELD) reads
`FIELD.col` entries of include/rename/types, and also plain `types` entries (a field of the
same name is usually of the same type); plain include/rename entries are the parent's.
Primary-key columns are always kept, whatever `include` says (the sink needs them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rawquery_workers.spec.models import ColumnType, Stream
from rawquery_workers.transform.flatten import FlatColumn, free_name


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
        self, names: list[str], reserved: Iterable[str] = ()
    ) -> tuple[dict[str, str], list[str]]:
        """name -> final name. A renamed column takes its new name; a column that had that
        name already (or a reserved one) gets `_2`, `_3`, ... and a warning."""
        reserved = set(reserved)
        targets = {n: self.rename.get(n, n) for n in names}
        claimed = {self.rename[n] for n in names if n in self.rename} | reserved
        taken = set(targets.values()) | reserved
        final: dict[str, str] = {}
        warnings: list[str] = []
        for name in names:
            target = targets[name]
            if target in reserved or (name not in self.rename and target in claimed):
                target = free_name(target, taken)
                warnings.append(
                    f"column '{name}' would clash with a renamed or system column; "
                    f"stored as '{target}'"
                )
            final[name] = target
        return final, warnings


def _scoped(mapping: Mapping[str, object], field: str) -> dict:
    start = field + "."
    return {k[len(start) :]: v for k, v in mapping.items() if k.startswith(start)}
