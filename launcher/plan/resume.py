"""Find what ``--resume`` points at without importing the payload (which imports torch)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import LaunchdeckError


def _latest(path: Path) -> Path | None:
    """The ``latest`` pointer of a checkpoint directory, or of a run directory's ``checkpoints/``."""
    for candidate in (path, path / "checkpoints"):
        if (candidate / "latest").is_file():
            return candidate / "latest"
    return None


def has_checkpoint(path: Path) -> bool:
    return _latest(path) is not None


def checkpoint_step(path: Path) -> int | None:
    """The step of the latest complete checkpoint under ``path`` (a run or checkpoint directory), if any."""
    pointer = _latest(path)
    digits = pointer.read_text().strip().removeprefix("step-") if pointer else ""
    return int(digits) if digits.isascii() and digits.isdigit() else None


def checkpoint_meta(path: Path) -> dict | None:
    """The latest complete checkpoint's ``meta.json`` (step, world and data-parallel size), if it has one."""
    pointer = _latest(path)
    meta = pointer.parent / pointer.read_text().strip() / "meta.json" if pointer else None
    try:
        return json.loads(meta.read_text()) if meta else None
    except (OSError, ValueError):
        return None


def find_resume_source(resume: str, runs_root: str, strategy: str) -> Path:
    """``last``: the newest run of ``strategy`` under ``runs_root`` with a complete checkpoint; else a path."""
    if resume != "last":
        path = Path(resume).absolute()
        if not has_checkpoint(path):
            raise LaunchdeckError(f"--resume {resume}: no complete checkpoint there (looked for latest and "
                                  "checkpoints/latest)")
        return path
    runs = sorted((p for p in Path(runs_root).glob(f"*-{strategy}*") if has_checkpoint(p)),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        raise LaunchdeckError(f"--resume last: no run of '{strategy}' with a checkpoint under {runs_root}/")
    return runs[-1].absolute()
