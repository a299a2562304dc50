"""What a tuner tries: a catalog strategy, a micro batch and knob overrides — and the winner as a strategy file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import yaml

from ..spec.engines import Knob

# knobs every engine shares, searched when the objective is the loss
LOSS_KNOBS = {"optimizer.lr": Knob(1e-5, 3e-2), "scheduler.warmup_ratio": Knob(0.0, 0.3, log=False)}


@dataclass(frozen=True)
class Candidate:
    """One configuration to measure: strategy, micro batch, and dotted knob overrides (sorted by name)."""

    strategy: str
    micro_batch: int
    knobs: tuple[tuple[str, float | int], ...] = ()

    def overrides(self) -> tuple[str, ...]:
        """The ``--set`` entries that turn the strategy into this candidate."""
        return (f"training.micro_batch={self.micro_batch}", *(f"{key}={value!r}" for key, value in self.knobs))

    @property
    def label(self) -> str:
        knobs = " ".join(f"{key.split('.')[-1]}={_short(value)}" for key, value in self.knobs)
        return f"{self.strategy} mb={self.micro_batch}" + (f" {knobs}" if knobs else "")

    def key(self, context: dict) -> str:
        """A stable identity of this candidate in ``context`` (model, world, hardware…): the cache's key."""
        text = json.dumps({"strategy": self.strategy, "overrides": self.overrides(), **context}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def _nest(doc: dict, dotted: str, value: object) -> None:
    node = doc
    *path, leaf = dotted.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[leaf] = value


def _short(value: float | int) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def best_yaml(candidate: Candidate, tokens_per_s: float, directory: str, overrides: tuple[str, ...] = ()) -> str:
    """The winner as a strategy file that ``extends`` the catalog strategy with every override the trial ran
    with: the tune's ``--set`` entries, then the micro batch and the chosen knobs."""
    doc: dict = {"description": f"tuned in {directory}: {candidate.label}, {tokens_per_s:,.0f} tokens/s",
                 "extends": candidate.strategy}
    for entry in (*overrides, *candidate.overrides()):
        key, _, text = entry.partition("=")
        _nest(doc, key, yaml.safe_load(text))
    header = "# Written by `launchdeck tune`: launch it with `launchdeck launch THIS_FILE`.\n"
    return header + yaml.safe_dump(doc, sort_keys=False)
