"""Measured trials remembered across runs of ``tune``, keyed by what decides the measurement: the model,
sequence, world, steps, candidate, and the hardware and software fingerprint. Only definite verdicts (ok,
out of memory) are kept; a timeout or a crash is measured again next time."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from ..files import write_atomic
from ..node import probe
from .trial import TrialResult

KEPT = ("ok", "oom")


def fingerprint(cpu: bool) -> dict:
    """This machine as a measurement depends on it: CPU model and count, GPUs, the frameworks' versions."""
    return {"machine": platform.machine(), "cpu": _cpu_model(), "cpus": os.cpu_count(),
            "gpus": 0 if cpu else probe.visible_gpus(),
            **{package: probe.version(package) for package in probe.PACKAGES}}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class TrialCache:
    """A JSON file of trial results by key; written atomically after every trial, so an interrupted tune
    keeps what it measured."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict] = self._read()

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}  # a missing or damaged cache only costs re-measuring
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> TrialResult | None:
        entry = self.entries.get(key)
        try:
            return TrialResult.from_json(entry) if entry else None
        except (KeyError, TypeError):
            return None

    def put(self, key: str, result: TrialResult) -> None:
        if result.status not in KEPT:
            return
        self.entries[key] = result.to_json()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self.entries, indent=1) + "\n")
