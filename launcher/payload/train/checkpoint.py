"""Atomic checkpoint directories: ``step-000010/`` appears whole or not at all; ``latest`` names it.

Writers fill ``.partial-step-000010/`` and rank 0 renames it once every rank has finished, then
rewrites ``latest`` through a rename. A kill at any moment leaves the previous complete checkpoint
as ``latest``; partial directories are swept by the next save.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ...files import LOW_SPACE, free_bytes, write_atomic

DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG)


class SaveFailed(Exception):
    """A checkpoint could not be written to disk; the previous complete one (if any) is untouched."""

    def __init__(self, step: int, cause: str, kept: Path | None):
        keep = f"the latest complete one is still {kept}" if kept else "there is no earlier complete checkpoint"
        super().__init__(f"checkpoint of step {step} not written: {cause}; {keep}")


def disk_problem(root: Path, exc: Exception) -> str | None:
    """What about the disk made a save fail (a full, read-only or forbidden one), or None when it was
    something else. torch reports a full disk as a RuntimeError, so the free space is asked too."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
        return f"{exc.strerror} ({exc.filename or root})"
    free = free_bytes(root)
    return f"no space left on device ({free // 2**20} MiB free under {root})" if free < LOW_SPACE else None


def final_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:06d}"


def partial_dir(root: Path, step: int) -> Path:
    return root / f".partial-step-{step:06d}"


def sweep_partials(root: Path) -> None:
    for stale in root.glob(".partial-step-*"):
        shutil.rmtree(stale, ignore_errors=True)


def publish(root: Path, step: int) -> Path:
    """Rank 0, after a barrier: make the partial checkpoint of ``step`` the latest complete one."""
    final = final_dir(root, step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial_dir(root, step), final)
    write_atomic(root / "latest", final.name + "\n")
    return final


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (``root`` may also be a run directory)."""
    for candidate in (root, root / "checkpoints"):
        pointer = candidate / "latest"
        if pointer.is_file():
            target = candidate / pointer.read_text().strip()
            if target.is_dir():
                return target
    return None
