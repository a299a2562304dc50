"""Find what ``--resume`` points at without importing the payload (which imports torch)."""

from __future__ import annotations

from pathlib import Path

from ..errors import LaunchdeckError


def has_checkpoint(path: Path) -> bool:
    return any((candidate / "latest").is_file() for candidate in (path, path / "checkpoints"))


def checkpoint_step(path: Path) -> int | None:
    """The step of the latest complete checkpoint under ``path`` (a run or checkpoint directory), if any."""
    for candidate in (path, path / "checkpoints"):
        pointer = candidate / "latest"
        if pointer.is_file():
            name = pointer.read_text().strip()
            digits = name.removeprefix("step-")
            return int(digits) if digits.isascii() and digits.isdigit() else None
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
