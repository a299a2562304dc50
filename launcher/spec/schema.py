"""Strict loading of plain data (parsed YAML) into frozen dataclasses.

Every field is declared with :func:`knob`: a default, a one-line description and optional
numeric bounds. Loading rejects unknown keys and wrong
types, naming the dotted path of the offending key. This is deliberately small: pydantic would
do the same but costs ~0.25 s of import and schema build, which alone would blow the CLI's
0.3 s budget for ``render``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union

from ..errors import StrategyError

T = TypeVar("T")


class SchemaError(StrategyError):
    """A value that does not fit the schema, with the dotted path of its key."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def knob(default: Any, doc: str, *, ge: float | None = None, gt: float | None = None,
         le: float | None = None) -> Any:
    """Declare a dataclass field with its description and bounds."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def load(cls: type[T], data: Any, path: str = "") -> T:
    """Validate ``data`` (a mapping) into an instance of dataclass ``cls``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SchemaError(path or 'document', f"expected a mapping, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise SchemaError(_join(path, str(key)), f"unknown key{_suggest(str(key), fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _check_bounds(f, _coerce(hints[name], data[name], _join(path, name)),
                                         _join(path, name))
    return cls(**values)


def dump(obj: Any) -> Any:
    """A dataclass tree back to plain data (tuples become lists), ready for YAML/JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: dump(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, (list, tuple)):
        return [dump(v) for v in obj]
    if isinstance(obj, dict):
        return {k: dump(v) for k, v in obj.items()}
    return obj


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return load(hint, value, path)
    if origin is Literal:
        return _literal(typing.get_args(hint), value, path)
    if origin in (Union, types.UnionType):
        return _union(typing.get_args(hint), value, path)
    if origin is tuple:
        return _tuple(typing.get_args(hint), value, path)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise SchemaError(path, f"expected a mapping, got {_kind(value)}")
        return value
    if hint is Any:
        return value
    return _scalar(hint, value, path)


def _scalar(hint: type, value: Any, path: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        number = _number(value)
        if number is not None and float(number).is_integer() and not isinstance(value, bool):
            return int(number)
    elif hint is float:
        number = _number(value)
        if number is not None and math.isfinite(number):
            return float(number)
    elif hint is str:
        if isinstance(value, str) and value.strip():
            return value
    else:  # pragma: no cover - a schema bug, not user input
        raise TypeError(f"unsupported schema type {hint!r} at {path}")
    expected = {bool: "true or false", int: "an integer", float: "a number",
                str: "a non-empty string"}[hint]
    raise SchemaError(path, f"expected {expected}, got {_show(value)}")


def _number(value: Any) -> float | None:
    """Numbers, and numeric strings such as '5e8' (YAML 1.1 reads those as strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return None
    return None


def _literal(choices: tuple, value: Any, path: str) -> Any:
    if value in choices and type(value) in {type(c) for c in choices}:
        return value
    raise SchemaError(path, f"expected one of {', '.join(map(str, choices))}; got {_show(value)}")


def _union(options: tuple, value: Any, path: str) -> Any:
    if value is None and type(None) in options:
        return None
    real = [o for o in options if o is not type(None)]
    if len(real) == 1:
        return _coerce(real[0], value, path)
    errors = []
    for option in real:
        try:
            return _coerce(option, value, path)
        except SchemaError as exc:
            errors.append(exc.problem.removeprefix("expected ").split("; got")[0].split(", got")[0])
    raise SchemaError(path, f"expected {' or '.join(errors)}; got {_show(value)}")


def _tuple(args: tuple, value: Any, path: str) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != len(args):
        raise SchemaError(path, f"expected a list of {len(args)} values, got {_show(value)}")
    return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))


def _check_bounds(f: dataclasses.Field, value: Any, path: str) -> Any:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return value
    ge, gt, le = f.metadata.get("ge"), f.metadata.get("gt"), f.metadata.get("le")
    if ge is not None and value < ge:
        raise SchemaError(path, f"must be >= {ge}, got {value}")
    if gt is not None and value <= gt:
        raise SchemaError(path, f"must be > {gt}, got {value}")
    if le is not None and value > le:
        raise SchemaError(path, f"must be <= {le}, got {value}")
    return value


def _suggest(key: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f" (allowed: {', '.join(known)}){hint}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
