"""The CONNECTION.STREAM references of an `rq query`, found and resolved exactly.

DuckDB compares identifiers ignoring case, even quoted ones, so left to itself it cannot
tell the tables of connections `cs` and `CS` apart. Instead, a reference is resolved here:
to the table spelled exactly so, else to the one table whose name matches ignoring case
(`MY-API.Customers` finds `my-api.customers`); several such tables and no exact one is an
error. Each table gets its own DuckDB name (`cs` and `CS` cannot both be DuckDB schemas,
so the second is `CS#2`) and every reference is rewritten to it, quoted: that is also how
a connection name holding '-', which SQL cannot parse unquoted, reaches DuckDB.

The scan skips string literals and comments, so `'shop.orders'` stays text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from rawquery_workers.errors import NotFoundError

Pair = tuple[str, str]  # (namespace, table)

# One token at a time; strings and comments are matched whole so that nothing inside them
# is taken for a name. A bare name may hold '-' (connection names do).
_TOKEN = re.compile(
    r"""
      (?P<string>'(?:[^']|'')*'?|[eE]'(?:[^'\\]|\\.|'')*'?)
    | (?P<dollar>\$\$.*?(?:\$\$|\Z)|\$(?P<tag>[A-Za-z_]\w*)\$.*?(?:\$(?P=tag)\$|\Z))
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | "(?P<quoted>(?:[^"]|"")*)"?
    | (?P<bare>\w[\w-]*)
    | (?P<dot>\.)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Reference:
    """`namespace.table` as written at sql[start:end]; `bare_namespace`: not quoted."""

    namespace: str
    table: str
    start: int
    end: int
    bare_namespace: bool


@dataclass(frozen=True, slots=True)
class _Name:
    text: str
    start: int
    end: int
    bare: bool


def references(sql: str) -> list[Reference]:
    """Every `name.name` outside strings and comments whose first name does not itself
    follow a dot (in `shop.orders.id` only `shop.orders` is a candidate)."""
    found: list[Reference] = []
    recent: list[_Name | str] = []  # significant tokens: a name, "." or "other"
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        if kind in ("space", "comment"):
            continue
        if kind in ("quoted", "bare"):
            bare = kind == "bare"
            text = match.group("bare") if bare else match.group("quoted").replace('""', '"')
            name = _Name(text, match.start(), match.end(), bare)
            if len(recent) >= 2 and recent[-1] == "." and isinstance(recent[-2], _Name):
                first = recent[-2]
                if not (len(recent) >= 3 and recent[-3] == "."):
                    found.append(Reference(first.text, text, first.start, name.end, first.bare))
            recent.append(name)
        else:
            recent.append("." if kind == "dot" else "other")
        del recent[:-3]
    return found


def resolve(ref: Reference, available: Iterable[Pair]) -> Pair | None:
    """The table `ref` names: spelled exactly, else the only one matching ignoring case;
    None when none matches (`alias.column`); NotFoundError when several match."""
    tables = list(available)
    wanted = (ref.namespace, ref.table)
    if wanted in tables:
        return wanted
    folded = (ref.namespace.lower(), ref.table.lower())
    matches = sorted(p for p in tables if (p[0].lower(), p[1].lower()) == folded)
    if len(matches) > 1:
        names = ", ".join(f"{ns}.{tb}" for ns, tb in matches)
        raise NotFoundError(
            f"{ref.namespace}.{ref.table} matches several tables that differ only in case "
            f"({names}); write the one you mean exactly as listed"
        )
    return matches[0] if matches else None


@dataclass(frozen=True, slots=True)
class Resolved:
    """A query's tables, each with its DuckDB (schema, view) name, and the rewritten SQL."""

    sql: str
    tables: dict[Pair, Pair]


def resolve_all(sql: str, available: Iterable[Pair]) -> Resolved:
    """Resolve every reference of `sql` to a table of `available` and rewrite it to that
    table's DuckDB name; references to no table are left as written."""
    tables = list(available)
    spans: list[tuple[Reference, Pair]] = []
    for ref in references(sql):
        pair = resolve(ref, tables)
        if pair is not None:
            spans.append((ref, pair))
    names = _duckdb_names(pair for _, pair in spans)
    out, last = [], 0
    for ref, pair in spans:
        schema, view = names[pair]
        out += [sql[last : ref.start], f"{quote_name(schema)}.{quote_name(view)}"]
        last = ref.end
    out.append(sql[last:])
    return Resolved("".join(out), names)


def unknown_hyphenated(sql: str, available: Iterable[Pair]) -> str | None:
    """A `name-with-dash.table` reference to no table: what SQL failed to parse."""
    tables = list(available)
    for ref in references(sql):
        if ref.bare_namespace and "-" in ref.namespace and resolve(ref, tables) is None:
            return f"{ref.namespace}.{ref.table}"
    return None


def _duckdb_names(pairs: Iterable[Pair]) -> dict[Pair, Pair]:
    """A DuckDB (schema, view) per table, distinct ignoring case, as close to its own
    name as that allows: the first spelling keeps it, later ones get `#2`, `#3`, ..."""
    schemas: dict[str, str] = {}  # namespace -> DuckDB schema
    names: dict[Pair, Pair] = {}
    for ns, tb in pairs:
        if (ns, tb) in names:
            continue
        if ns not in schemas:
            schemas[ns] = _unused(ns, {s.lower() for s in schemas.values()})
        schema = schemas[ns]
        taken = {v.lower() for s, v in names.values() if s == schema}
        names[(ns, tb)] = (schema, _unused(tb, taken))
    return names


def _unused(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{name}#{n}"
    return candidate


def quote_name(name: str) -> str:
    """`name` as a DuckDB identifier in double quotes."""
    return '"' + name.replace('"', '""') + '"'
