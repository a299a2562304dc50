"""Measured trials remembered across runs of ``tune``, keyed by what decides the measurement: the rendered
config and the hosts it runs on, the model, sequence, steps, env, and the hardware and software fingerprint
(payload code included). Only definite verdicts (ok, the payload's out-of-memory exit) are kept; a timeout
or a crash is measured again next time."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

from ..errors import OUT_OF_MEMORY_EXIT
from ..files import write_atomic
from ..node import probe
from .trial import TrialResult

PAYLOAD = Path(__file__).resolve().parent.parent / "payload"


def fingerprint(cpu: bool) -> dict:
    """What a measurement depends on besides the candidate: CPU model and count, GPU models, the frameworks'
    versions, and the payload's own code (a change to the training loop invalidates old speeds)."""
    return {"machine": platform.machine(), "cpu": _cpu_model(), "cpus": os.cpu_count(),
            "gpus": [] if cpu else _gpu_models(), "payload": _payload_digest(),
            **{package: probe.version(package) for package in probe.PACKAGES}}


def _gpu_models() -> list[str]:
    """NVIDIA GPU models from the driver's /proc entries (no torch, no nvidia-smi needed)."""
    models = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        lines = [line for line in info.read_text().splitlines() if line.startswith("Model:")]
        models += [line.split(":", 1)[1].strip() for line in lines]
    return models


def _payload_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(PAYLOAD.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


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
        """Remember a definite verdict: ok, or the payload's own out-of-memory exit (not any SIGKILL, which
        may be a preemption or another job's memory). Merged into what is on disk now (another tune may have
        written meanwhile)."""
        if not definite(result):
            return
        self.entries = {**self._read(), key: result.to_json()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self.entries, indent=1) + "\n")


def definite(result: TrialResult) -> bool:
    return result.status == "ok" or (result.status == "oom" and f"exit code {OUT_OF_MEMORY_EXIT}" in result.reason)
