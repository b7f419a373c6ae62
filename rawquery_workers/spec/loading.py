"""Reading a connector spec: JSON text -> validated `Spec`, or every problem at once.

Pydantic finds the problems; this module says them for a person, one line each:
`<json path>: <message>[; <hint>]`, e.g.

    streams[2].pagination.type: unknown pagination type 'pages'; expected one of offset, ...
    streams[0].paramz: unknown field; did you mean 'params'?
    auth.header: expected a string, got an integer

Paths follow the document (`streams[0].pagination.page_size`): pydantic's internal location
segments (discriminator tags, union branch names) are dropped by walking the models alongside
each error location. Lines come in the order their paths appear in the document. Values are
quoted only when short and never under `auth` or under a key that may name a secret.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, cast

import orjson
from pydantic import BaseModel, JsonValue, Tag, ValidationError
from pydantic_core import ErrorDetails

from rawquery_workers.errors import SpecError
from rawquery_workers.spec.models import RuleViolations, Spec, Stream

Segment = str | int
_UNORDERED = 1_000_000  # sort key for a path that is not in the document (a missing field)
_SECRET_KEY = re.compile(
    r"token|secret|passw|pwd|api[-_]?key|authori[sz]ation|^auth$|credential|session|cookie|"
    r"signature",
    re.IGNORECASE,
)
_ENUM_KEYS_UNDER_AUTH = ("type", "grant_type", "method")
_CREDENTIAL_FIELDS = ("username", "user", "client_id", "refresh_token")
_CREDENTIALS_HINT = (
    "credentials never go in the spec: give them to `rq connect` (--auth-token, "
    "--auth-user/--auth-pass, or --client-id/--client-secret/--refresh-token)"
)
_PYDANTIC_SEGMENT = re.compile(r"^[a-z][a-z-]*\[.*\]$|^(str|int|float|bool|none|\[key\])$")
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "greater_than": ("gt", "must be greater than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "less_than": ("lt", "must be less than {}"),
}
# A field put at the wrong level: where it does belong.
_BELONGS = (
    (Stream, "is a stream field; put it inside an entry of 'streams'"),
    (Spec, "is a top-level field of the spec, not of a stream"),
)


# --- public API ----------------------------------------------------------------------------


def parse_spec(data: object, source: str | None = None) -> Spec:
    """Validate a decoded JSON document as a connector spec.

    Raises SpecError carrying one line per problem (JSON path, what is wrong, a hint).
    """
    if not isinstance(data, dict):
        raise SpecError([f"top level: expected a JSON object {{...}}, got {_kind(data)}"], source)
    api_type = "graphql" if data.get("type") == "graphql" else "rest"
    try:
        return Spec.model_validate(data, context={"api_type": api_type})
    except ValidationError as exc:
        raise SpecError(spec_problems(exc, data), source) from None


def load_spec_file(path: str | Path) -> Spec:
    """Read, decode and validate a spec file; every error is a SpecError naming the file."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise SpecError("no such file", name) from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a spec file", name) from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror or exc}", name) from None
    return parse_spec(decode_json(raw, name), source=name)


def decode_json(raw: bytes, name: str) -> object:
    """JSON bytes -> value; malformed JSON raises SpecError `NAME:LINE:COLUMN: invalid JSON`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = exc.msg.rstrip(".") or "malformed"
        raise SpecError(f"{name}:{exc.lineno}:{exc.colno}: invalid JSON: {reason}") from None
    duplicates = _duplicate_keys(raw)
    if duplicates:
        keys = ", ".join(_quote(k) for k in duplicates)
        which = f"key {keys} appears" if len(duplicates) == 1 else f"keys {keys} appear"
        raise SpecError(f"invalid JSON: {which} twice in one object", name)
    return data


def spec_to_json(spec: Spec) -> dict[str, object]:
    """The spec as stored: JSON types, only the fields its author set (it validates again)."""
    return cast(dict[str, object], spec.model_dump(mode="json", exclude_unset=True))


# --- turning pydantic errors into lines ----------------------------------------------------


def spec_problems(exc: ValidationError, data: object) -> list[str]:
    """One line per problem, in document order, without duplicates."""
    found: list[tuple[tuple[int, ...], str]] = []
    branches: dict[tuple[Segment, ...], list[tuple[ErrorDetails, list[Segment]]]] = {}
    for error in exc.errors():
        walked = _walk(error["loc"])
        if walked.branch is not None:
            branches.setdefault(walked.branch, []).append((error, walked.path))
            continue
        for path, message in _messages(error, walked):
            found.append((_order(path, data), f"{render_path(path)}: {message}"))
    for at, errors in branches.items():
        for path, message in _branch_messages(list(at), errors):
            found.append((_order(path, data), f"{render_path(path)}: {message}"))
    found.sort(key=lambda item: item[0])
    # The models' messages may quote a value as it is: printable, it stays one line.
    return list(dict.fromkeys(_printable(line) for _, line in found))


def render_path(path: Sequence[Segment]) -> str:
    """`["streams", 0, "name"]` -> `streams[0].name`; the empty path is `top level`. A key
    with spaces, dots, quotes, brackets or control characters is quoted: `expand["a b"]`."""
    text = ""
    for seg in path:
        if isinstance(seg, int):
            text += f"[{seg}]"
        elif re.fullmatch(r"[^.\[\]\s\"]+", seg) and seg.isprintable():
            text += f".{seg}" if text else seg
        else:
            text += f"[{json.dumps(seg)}]"
    return text or "top level"


class _Walked(typing.NamedTuple):
    path: list[Segment]
    owner: type[BaseModel] | None  # the model the last segment was looked up in
    branch: tuple[Segment, ...] | None  # set when the loc went through a plain union


def _walk(loc: tuple[int | str, ...]) -> _Walked:
    """Map a pydantic error location onto the document's path, dropping internal segments."""
    path: list[Segment] = []
    tp: Any = Spec
    owner: type[BaseModel] | None = None
    branch: tuple[Segment, ...] | None = None
    for seg in loc:
        tp = _unwrap(tp)
        members = _union_members(tp)
        if members is not None:
            tp = _member(members, seg)
            if tp is None and branch is None:
                branch = tuple(path)
            continue
        if isinstance(seg, int):
            path.append(seg)
            tp = _item_type(tp, list)
        elif _is_model(tp):
            owner = tp
            path.append(seg)
            field = tp.model_fields.get(seg)
            tp = field.annotation if field is not None else None
        elif tp is None and _PYDANTIC_SEGMENT.match(seg):
            continue
        else:
            owner = None
            path.append(seg)
            tp = _item_type(tp, dict)
    return _Walked(path, owner, branch)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        elif type(tp).__name__ == "TypeAliasType":  # e.g. pydantic's JsonValue
            tp = tp.__value__
        elif tp == "JsonValue" or tp == typing.ForwardRef("JsonValue"):  # its items
            tp = JsonValue
        else:
            return tp


def _union_members(tp: Any) -> list[Any] | None:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    return None


def _member(members: list[Any], seg: Segment) -> Any:
    """The union member a pydantic tag segment names: a discriminator value or class name,
    or the `Tag` of a member (JsonValue's `list`, `dict`, `str`, ...)."""
    for member in members:
        if _is_model(member) and (seg == member.__name__ or seg in _tags(member)):
            return member
        if typing.get_origin(member) is Annotated and any(
            isinstance(meta, Tag) and meta.tag == seg for meta in typing.get_args(member)[1:]
        ):
            return member
    return None


def _tags(model: type[BaseModel]) -> tuple[object, ...]:
    field = model.model_fields.get("type")
    if field is None or typing.get_origin(field.annotation) is not Literal:
        return ()
    return typing.get_args(field.annotation)


def _item_type(tp: Any, container: type) -> Any:
    if typing.get_origin(tp) is container:
        return typing.get_args(tp)[-1]
    return None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _messages(error: ErrorDetails, walked: _Walked) -> Iterator[tuple[list[Segment], str]]:
    kind, path = error["type"], walked.path
    if kind == "value_error":
        problem = (error.get("ctx") or {}).get("error")
        if isinstance(problem, RuleViolations):
            for rel, message in problem.problems:
                yield path + parse_path(rel), message
            return
        yield path, str(problem) if problem is not None else error["msg"]
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        yield [*path, "type"], _tag_message(error, path)
    elif kind == "extra_forbidden":
        yield path, _extra_message(path, walked.owner)
    else:
        yield path, _value_message(error, path)


def _branch_messages(
    at: list[Segment], errors: list[tuple[ErrorDetails, list[Segment]]]
) -> Iterator[tuple[list[Segment], str]]:
    """A value matched no member of a plain union (e.g. `str | list[str]`): when one member
    got further into the value, report its problems; otherwise say what was expected."""
    deeper = [(error, path) for error, path in errors if len(path) > len(at)]
    if deeper:
        by_path: dict[tuple[Segment, ...], list[tuple[ErrorDetails, list[Segment]]]] = {}
        for error, path in deeper:
            by_path.setdefault(tuple(path), []).append((error, path))
        for path_key, group in by_path.items():
            if len(group) > 1:  # an item that matched none of a nested union's members
                yield from _branch_messages(list(path_key), group)
            else:
                yield group[0][1], _value_message(*group[0])
        return
    wanted = [_EXPECTED.get(error["type"], "") for error, _ in errors]
    choices = [w for w in dict.fromkeys(wanted) if w]
    if "a number" in choices and "an integer" in choices:
        choices.remove("an integer")
    choices = ["a boolean" if w == "true or false" else w for w in choices]
    got = _shown(errors[0][0].get("input"), at)
    yield at, f"expected {_or(choices) or 'another kind of value'}, got {got}"


def _tag_message(error: ErrorDetails, path: list[Segment]) -> str:
    ctx = error.get("ctx") or {}
    expected = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
    if not expected:
        members = _union_members(_unwrap(_type_at(path))) or []
        expected = [str(t) for m in members if _is_model(m) for t in _tags(m)]
    choices = f"expected one of {', '.join(expected)}"
    if error["type"] == "union_tag_not_found":
        return f"required; {choices}"
    given = error.get("input")
    tag = given.get("type") if isinstance(given, dict) else ctx.get("tag")
    kind = str(path[-1]) if path and isinstance(path[-1], str) else "object"
    return f"unknown {kind} type {_quote(tag)}; {choices}{_did_you_mean(tag, expected)}"


def _extra_message(path: list[Segment], owner: type[BaseModel] | None) -> str:
    key = str(path[-1]) if path else ""
    if owner is None:
        return "unknown field"
    if path[0] == "auth" and (_SECRET_KEY.search(key) or key in _CREDENTIAL_FIELDS):
        return f"unknown field; {_CREDENTIALS_HINT}"
    fields = list(owner.model_fields)
    hint = _did_you_mean(key, fields)
    if hint:
        return f"unknown field{hint}"
    for model, where in _BELONGS:
        if model is not owner and key in model.model_fields:
            return f"unknown field; '{key}' {where}"
    return f"unknown field; expected one of {', '.join(fields)}"


def _value_message(error: ErrorDetails, path: list[Segment]) -> str:
    kind, ctx, given = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        return "required"
    if kind == "literal_error":
        return _literal_message(given, str(ctx.get("expected", "")), path)
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_shown(given, path)}"
    if kind in _BOUNDS:
        name, text = _BOUNDS[kind]
        return f"{text.format(_number(ctx.get(name)))}, got {_shown(given, path)}"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"needs at least {least} items"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"is too long (at most {ctx.get('max_length')} characters)"
    if kind == "string_pattern_mismatch":
        return _pattern_message(given, path)
    message = error["msg"]
    return message[:1].lower() + message[1:]


def _literal_message(given: object, expected_text: str, path: list[Segment]) -> str:
    expected = re.findall(r"'([^']*)'", expected_text)
    shown = _quote(given) if _may_show(path, enum=True) else _kind(given)
    if len(expected) == 1:
        return f"must be '{expected[0]}', got {shown}"
    hint = _did_you_mean(given, expected) if _may_show(path, enum=True) else ""
    return f"{shown} is not one of {', '.join(expected)}{hint}"


def _pattern_message(given: object, path: list[Segment]) -> str:
    if path and path[-1] == "name":
        return (
            f"{_quote(given)} is not a valid stream name; use letters, digits and '_', "
            "not starting with a digit (it becomes the table name)"
        )
    return "has characters that are not allowed here"


# --- small helpers -------------------------------------------------------------------------


def parse_path(text: str) -> list[Segment]:
    """`streams[1].expand.items` -> `["streams", 1, "expand", "items"]` ('' -> [])."""
    segments: list[Segment] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text):
        segments.append(int(index) if index else name)
    return segments


def _type_at(path: list[Segment]) -> Any:
    tp: Any = Spec
    for seg in path:
        tp = _unwrap(tp)
        if _is_model(tp) and isinstance(seg, str):
            field = tp.model_fields.get(seg)
            tp = field.annotation if field else None
        else:
            tp = _item_type(tp, list if isinstance(seg, int) else dict)
    return tp


def _order(path: list[Segment], data: object) -> tuple[int, ...]:
    """Where a path sits in the document: positions of its keys and indexes."""
    key: list[int] = []
    node = data
    for seg in path:
        if isinstance(node, dict) and seg in node:
            key.append(list(node).index(seg))
            node = node[seg]
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            key.append(seg)
            node = node[seg]
        else:
            key.append(_UNORDERED)
            node = None
    return tuple(key)


def _may_show(path: list[Segment], *, enum: bool = False) -> bool:
    """Values under `auth` (except its enum settings) or a secret-looking key stay hidden."""
    if path and path[0] == "auth":
        return enum and len(path) >= 2 and path[-1] in _ENUM_KEYS_UNDER_AUTH
    return not any(isinstance(seg, str) and _SECRET_KEY.search(seg) for seg in path)


def _shown(value: object, path: list[Segment]) -> str:
    if not _may_show(path):
        return _kind(value)
    try:
        text = orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254 levels)
        return _kind(value)
    return _excerpt(text)


def _quote(value: object) -> str:
    if isinstance(value, str):
        return f"'{_excerpt(value)}'"
    return _shown(value, [])


def _excerpt(text: str) -> str:
    """`text` cut at 40 characters (37 and "..."), made printable."""
    return _printable(text if len(text) <= 40 else text[:37] + "...")


def _printable(text: str) -> str:
    """Control characters and line separators (U+0085, U+2028, ...) escaped: one problem
    stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    names = {str: "a string", int: "an integer", float: "a number", list: "a list"}
    return names.get(type(value), "an object" if isinstance(value, dict) else "a value")


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _or(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _did_you_mean(given: object, choices: Sequence[str]) -> str:
    if not isinstance(given, str):
        return ""
    close = difflib.get_close_matches(given, list(choices), n=1, cutoff=0.6)
    if not close:
        close = [c for c in choices if c.lower() == given.lower()]
    return f"; did you mean '{close[0]}'?" if close else ""


def _duplicate_keys(raw: bytes) -> list[str]:
    """Keys repeated inside one object (orjson would silently keep the last one)."""
    repeated: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and key not in repeated:
                repeated.append(key)
            seen.add(key)
        return dict(items)

    # Nested deeper than json.loads goes (orjson goes to 1024 levels): no spec is valid that
    # deep, and validation says where.
    with contextlib.suppress(RecursionError):
        json.loads(raw, object_pairs_hook=pairs)
    return repeated
