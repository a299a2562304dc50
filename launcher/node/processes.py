"""This job's processes, found by ancestry (never by name pattern), and their teardown."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

from . import rankenv

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphans of our children reparent to us instead of init, so teardown can still find them."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except OSError:
        pass


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent(int(entry.name))
            if parent is not None:
                parents[int(entry.name)] = parent
    return parents


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state, parent …); empty once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if len(fields) > 1 else None


def parents_of(pids: list[int]) -> dict[int, int]:
    """pid -> parent pid, for those of ``pids`` still alive."""
    found = {pid: _parent(pid) for pid in pids}
    return {pid: parent for pid, parent in found.items() if parent is not None}


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren …)."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, stack = [], list(children.get(pid, []))
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def rank_tops(pids: list[int]) -> dict[int, int]:
    """pid -> rank for the top process of each rank among ``pids``: it carries a rank (RANK or its MPI and
    Horovod names) and its parent does not carry the same one (a rank's children inherit its variables)."""
    ranks = {pid: rankenv.lookup(environ(pid), "RANK") for pid in pids}
    parents = parents_of(pids)
    return {pid: rank for pid, rank in ranks.items() if rank is not None and ranks.get(parents.get(pid)) != rank}


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def state(pid: int) -> str | None:
    """The kernel's one-letter state (R, S, D, T stopped, t traced, Z zombie …); None once gone."""
    fields = _stat(pid)
    return fields[0] if fields else None


def environ(pid: int) -> dict[str, str]:
    """The environment a process started with (empty when it is gone or not ours to read)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def terminate_tree(root: int = 0, grace: float = 5.0, spare: int | None = None) -> list[int]:
    """SIGTERM every descendant of ``root`` (default: us), SIGKILL what is left after ``grace`` s.

    ``spare``: a child whose exit status a ``Popen`` still has to collect; it is signalled like the
    others but never reaped here. Returns every process that was signalled."""
    root = root or os.getpid()
    targets = descendants(root)
    signal_all(targets, signal.SIGTERM)
    stubborn = _wait_gone(root, grace, spare)
    signal_all(stubborn, signal.SIGKILL)
    _wait_gone(root, 2.0, spare)
    return targets


def _wait_gone(root: int, seconds: float, spare: int | None = None) -> list[int]:
    """Reap and poll until ``root`` has only ``spare`` (dead or alive) left or ``seconds`` pass; returns
    the survivors."""
    deadline = time.monotonic() + seconds
    while True:
        _reap(spare)
        alive = [pid for pid in descendants(root) if pid != spare or state(pid) not in (None, "Z")]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _reap(spare: int | None = None) -> None:
    """Collect exited orphans that were reparented to us (we are their subreaper), except ``spare``."""
    if spare is not None:
        for pid in [child for child, parent in _parents().items() if parent == os.getpid() and child != spare]:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        return
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
