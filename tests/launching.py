"""Helpers for tests that launch real jobs: run launchdeck as a process, read run records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LAUNCH_TIMEOUT_S = 300


def launchdeck(*args: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = LAUNCH_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def start(*args: str, cwd: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "launcher", *args], cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def processes_of(run_dir: Path) -> list[int]:
    """Live processes whose environment names this run directory (any rank, agent or child)."""
    marker = f"LAUNCHDECK_RUN_DIR={run_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
