"""Find, read and merge strategy documents into typed :class:`Strategy` objects.

A strategy is named by catalog name (``zero3``) or by the path of a user's YAML file, which may
``extends:`` a catalog strategy or another file (relative to itself). Overrides (``--set a.b=c``)
apply after inheritance; every result is validated strictly (see :mod:`launcher.spec.schema`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import StrategyError
from . import engines, rules, schema
from .strategy import Strategy

SUFFIXES = (".yaml", ".yml")


def catalog_dir() -> Path:
    """The catalog: ``$LAUNCHDECK_STRATEGIES_DIR`` or the repository's ``strategies/``."""
    env = os.environ.get("LAUNCHDECK_STRATEGIES_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "strategies"


def names() -> list[str]:
    """Every strategy name in the catalog, sorted."""
    return sorted(p.stem for p in catalog_dir().glob("*.yaml"))


def locate(ref: str, relative_to: Path | None = None) -> Path:
    """The file behind a catalog name or a path (a path is anything with a suffix or a slash)."""
    if ref.endswith(SUFFIXES) or "/" in ref or os.sep in ref:
        path = Path(ref) if relative_to is None else relative_to / ref
        if not path.is_file():
            raise StrategyError(f"strategy file not found: {path}")
        return path
    path = catalog_dir() / f"{ref}.yaml"
    if not path.is_file():
        raise StrategyError(f"unknown strategy '{ref}' (known: {', '.join(names()) or 'none'})")
    return path


def read_document(path: Path) -> dict[str, Any]:
    """Parse one YAML file into a mapping; syntax errors name the file, line and column."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise StrategyError(f"{where}: invalid YAML: {exc.problem}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise StrategyError(f"{path}: cannot read: {exc}") from None
    if data is None:
        raise StrategyError(f"{path}: empty strategy file")
    if not isinstance(data, dict):
        raise StrategyError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    if "name" in data:
        raise StrategyError(f"{path}: name: not allowed, the name is the file name ('{path.stem}')")
    return data


def resolve_document(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The document at ``path`` with its ``extends`` chain merged in (child wins, mappings merge)."""
    real = path.resolve()
    if real in _chain:
        cycle = " -> ".join(p.stem for p in (*_chain, real))
        raise StrategyError(f"{path}: extends cycle: {cycle}")
    doc = read_document(path)
    parent_ref = doc.pop("extends", None)
    if parent_ref is None:
        return doc
    if not isinstance(parent_ref, str) or not parent_ref.strip():
        raise StrategyError(f"{path}: extends: expected a strategy name or file path, got {parent_ref!r}")
    parent_dir = path.parent if (parent_ref.endswith(SUFFIXES) or "/" in parent_ref) else None
    parent = resolve_document(locate(parent_ref, parent_dir), (*_chain, real))
    parent.pop("description", None)  # a description speaks for its own file only
    return deep_merge(parent, doc)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``over`` into a copy of ``base``; nested mappings merge, everything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` → (['a', 'b', 'c'], value parsed as a YAML scalar/flow)."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.isidentifier() for p in parts):
        raise StrategyError(f"--set {text}: expected dotted.key=value (e.g. zero.stage=3)")
    try:
        value = yaml.load(raw, Loader=_loader()) if raw.strip() else ""
    except yaml.YAMLError:
        raise StrategyError(f"--set {text}: the value is not valid YAML") from None
    return parts, value


def apply_overrides(doc: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply each ``--set`` in order; a key below a non-mapping is an error naming the key."""
    result = dict(doc)
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] in ("name", "extends"):
            raise StrategyError(f"--set {text}: '{parts[0]}' cannot be overridden")
        patch: Any = value
        for part in reversed(parts):
            patch = {part: patch}
        try:
            _check_mergeable(result, patch, [])
        except StrategyError as exc:
            raise StrategyError(f"--set {text}: {exc}") from None
        result = deep_merge(result, patch)
    return result


def _check_mergeable(base: Mapping[str, Any], patch: Mapping[str, Any], path: list[str]) -> None:
    for key, value in patch.items():
        here = base.get(key)
        if isinstance(value, Mapping) and here is not None and not isinstance(here, Mapping):
            raise StrategyError(f"{'.'.join([*path, key])} is a {type(here).__name__}, not a section")
        if isinstance(value, Mapping) and isinstance(here, Mapping):
            _check_mergeable(here, value, [*path, key])


def load_strategy(ref: str, overrides: Iterable[str] = ()) -> Strategy:
    """Locate, merge, override, validate: the one way to get a :class:`Strategy`."""
    overrides = list(overrides)
    path = locate(ref)
    doc = apply_overrides(resolve_document(path), overrides)
    try:
        return build(path.stem, doc)
    except schema.SchemaError as exc:
        raise StrategyError(f"{_blame(exc.path, overrides, path)}: {exc}") from None


def to_yaml(strategy: Strategy) -> str:
    """The strategy as resolved, as a strategy file: what ``load_strategy`` reads back to the same strategy
    (its name is the file's, so it goes in the first line's comment)."""
    foreign = (engines.all_sections() - engines.get(strategy.engine).sections) | {"name"}
    doc = {key: value for key, value in schema.dump(strategy).items() if key not in foreign}
    head = f"# {strategy.name}, resolved: extends merged, overrides applied\n"
    return head + yaml.safe_dump(doc, sort_keys=False)


def build(name: str, doc: Mapping[str, Any]) -> Strategy:
    """Validate a merged document; fill the engine's default section; check cross-field rules."""
    spec = _engine(doc.get("engine", Strategy.engine))
    foreign = sorted(k for k in engines.all_sections() - spec.sections if k in doc)
    if foreign:
        raise schema.SchemaError(foreign[0], f"section not used by engine '{spec.name}'")
    strategy = schema.load(Strategy, {**doc, "name": name})
    if not strategy.description:
        raise schema.SchemaError("description", "required: one line saying what the strategy is for")
    absent = {section: value for section, value in spec.defaults.items() if getattr(strategy, section) is None}
    strategy = dataclasses.replace(strategy, **absent)
    rules.check(strategy)
    return strategy


def _engine(name: object) -> engines.EngineSpec:
    """The registry entry the document names; anything else is an error listing the registered engines."""
    if not isinstance(name, str) or name not in engines.names():
        raise schema.SchemaError("engine", f"expected one of {', '.join(engines.names())}, got {name!r}")
    return engines.get(name)


def _blame(key_path: str, overrides: list[str], path: Path) -> str:
    """Name the source of a bad value: the ``--set`` that wrote it, else the file."""
    for text in reversed(overrides):
        key = text.partition("=")[0].strip()
        if key_path == key or key_path.startswith(key + ".") or key.startswith(key_path + "."):
            return f"--set {text}"
    return str(path)


def _loader() -> type:
    return _StrictLoader


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that refuses duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        for index, key in enumerate(keys):
            if key in keys[:index]:
                line = node.value[index][0].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (line {line})", node.value[index][0].start_mark)
        return super().construct_mapping(node, deep=deep)
