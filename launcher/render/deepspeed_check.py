"""Check a rendered DeepSpeed config with DeepSpeed's own parser at the rendered world size.

``DeepSpeedConfig`` assumes world size 1 without a process group. We hand it the data-parallel
size through its ``mpu`` argument and a stand-in for ``deepspeed.comm`` that answers rank 0, so
its batch assertion runs against the real numbers. While it parses we record which top-level keys
it reads: a key it never looks at is one it would silently ignore. Imports deepspeed: only for
``render --check``, launches and tests.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import types
from collections.abc import Iterator
from typing import Any

from ..errors import ConfigCheckError
from . import RenderedConfig


class _RecordingDict(dict):
    """A dict that remembers which keys were asked for."""

    def __init__(self, data: dict[str, Any], seen: set[str]):
        super().__init__(data)
        self.seen = seen

    def __getitem__(self, key: str) -> Any:
        self.seen.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.seen.add(key)  # type: ignore[arg-type]
        return super().__contains__(key)

    def keys(self) -> Any:
        return _RecordingKeys(super().keys(), self.seen)

    def __copy__(self) -> _RecordingDict:
        return _RecordingDict(dict(self), self.seen)


class _RecordingKeys(list):
    def __init__(self, keys: Any, seen: set[str]):
        super().__init__(keys)
        self.seen = seen

    def __contains__(self, key: object) -> bool:
        self.seen.add(key)  # type: ignore[arg-type]
        return super().__contains__(key)


class _DataParallel:
    """The slice of DeepSpeed's ``mpu`` interface its config parser uses."""

    def __init__(self, size: int):
        self.size = size

    def get_data_parallel_world_size(self) -> int:
        return self.size


@contextlib.contextmanager
def _parser_at(world_size: int) -> Iterator[Any]:
    """DeepSpeed's config class seeing rank 0 of ``world_size``; its chatter kept off stdout."""
    with contextlib.redirect_stdout(sys.stderr):
        import deepspeed.runtime.config as ds_config

    real_dist = ds_config.dist
    ds_config.dist = types.SimpleNamespace(get_rank=lambda: 0, get_world_size=lambda *_: world_size)
    logger = logging.getLogger("DeepSpeed")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield ds_config.DeepSpeedConfig
    finally:
        ds_config.dist = real_dist
        logger.setLevel(level)


def parse(config: dict[str, Any], world_size: int, data_parallel_size: int) -> set[str]:
    """Run DeepSpeed's parser; return the top-level keys it read. Raises ConfigCheckError."""
    seen: set[str] = set()
    with _parser_at(world_size) as parser:
        try:
            parser(_RecordingDict(config, seen), mpu=_DataParallel(data_parallel_size))
        except Exception as exc:  # DeepSpeed raises AssertionError, ValueError, pydantic errors...
            message = " ".join(str(exc).split())
            raise ConfigCheckError(f"DeepSpeed's config parser rejected the config: {message}") from None
    return seen


def check(rendered: RenderedConfig) -> None:
    """DeepSpeed's parser accepts ``rendered`` at its world size and reads every key we wrote."""
    config = rendered.config
    if "auto" in _leaves(config):
        config = _without_auto(rendered)
    seen = parse(config, rendered.cluster.world_size, rendered.data_parallel_size)
    ignored = sorted(set(config) - seen)
    if ignored:
        raise ConfigCheckError(f"DeepSpeed ignores top-level key(s): {', '.join(ignored)}")


def _without_auto(rendered: RenderedConfig) -> dict[str, Any]:
    """The HF flavour with the Trainer's "auto"s filled as the plain render fills them."""
    from .deepspeed import render as render_plain

    return render_plain(rendered.strategy, rendered.cluster).config


def _leaves(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    else:
        yield node
