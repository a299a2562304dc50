"""Small file helpers: writes never leave a half-written file behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import LaunchdeckError


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise LaunchdeckError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        os.unlink(tmp)
        raise LaunchdeckError(f"cannot write {target}: {exc.strerror}") from None


LOW_SPACE = 16 * 2**20  # bytes free below which a filesystem counts as full (a save or a log did not fit)


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes free on the filesystem of ``path``; LOW_SPACE when that cannot be asked (``path`` is gone)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return LOW_SPACE
