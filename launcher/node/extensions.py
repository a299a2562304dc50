"""Where torch builds C++ extensions (DeepSpeed's CPU ops: ~40 s each on first use), and its stale locks.

torch's cpp_extension guards a build with a ``lock`` file and waits as long as it exists. A rank killed
mid-build (a timed-out tuning trial, a Ctrl-C in the first minute) leaves that file behind, and every
later job that needs the op waits forever. Two virtual environments sharing the default build root also
rebuild each other's ops (their build files name different source paths). So launchdeck gives each
interpreter its own build root, and removes locks no build can still hold (older than any build takes).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

ENV = "TORCH_EXTENSIONS_DIR"
STALE_AFTER_S = 900.0  # a DeepSpeed op builds in about a minute; a lock this old has no builder left


def build_root(prefix: str = sys.prefix) -> str:
    """This interpreter's own build root (torch's default is shared by every environment of the user)."""
    tag = hashlib.sha256(prefix.encode()).hexdigest()[:10]
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    return str(Path.home() / ".cache" / "torch_extensions" / f"{version}-launchdeck-{tag}")


def stale_locks(root: str, max_age: float = STALE_AFTER_S) -> list[Path]:
    """Build locks under ``root`` older than ``max_age`` seconds that no process here holds open."""
    base = Path(root)
    if not base.is_dir():
        return []
    now = time.time()
    found = []
    for lock in base.glob("*/lock"):
        try:
            if now - lock.stat().st_mtime > max_age:
                found.append(lock)
        except OSError:  # removed meanwhile: a build finished
            continue
    return unheld(found)


def locks_since(root: str, since: float) -> list[Path]:
    """Build locks under ``root`` made at or after ``since`` (epoch seconds) that no process here holds open: a
    stopped job's, once it is gone, and never the lock of another job's build still under way."""
    base = Path(root)
    found = []
    for lock in base.glob("*/lock") if base.is_dir() else []:
        try:
            if lock.stat().st_mtime >= since:
                found.append(lock)
        except OSError:
            continue
    return unheld(found)


def unheld(locks: list[Path]) -> list[Path]:
    """The locks no process of this machine has open: torch's FileBaton keeps its lock file open for as long as
    the build runs (a build in another PID namespace or on another host is not seen)."""
    if not locks:
        return []
    held = open_files()
    return [lock for lock in locks if _identity(lock) not in held]


def open_files() -> set[tuple[int, int]]:
    """(device, inode) of every file some process here has open (symlinked paths compare equal this way)."""
    found = set()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            info = os.stat(fd)
        except OSError:  # closed or gone meanwhile, or not ours to read
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def sweep(root: str, max_age: float = STALE_AFTER_S, since: float | None = None) -> list[Path]:
    """Remove the stale locks under ``root`` (older than ``max_age``, or made since ``since`` by a job that is
    gone); returns what was removed."""
    removed = []
    for lock in stale_locks(root, max_age) if since is None else locks_since(root, since):
        try:
            os.unlink(lock)
            removed.append(lock)
        except OSError:
            continue
    return removed
