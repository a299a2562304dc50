"""This job's processes, found by ancestry (never by name pattern), and their teardown."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

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
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


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


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def terminate_tree(root: int = 0, grace: float = 5.0) -> list[int]:
    """SIGTERM every descendant of ``root`` (default: us), SIGKILL what is left after ``grace`` s.

    Returns every process that was signalled."""
    root = root or os.getpid()
    targets = descendants(root)
    signal_all(targets, signal.SIGTERM)
    stubborn = _wait_gone(root, grace)
    signal_all(stubborn, signal.SIGKILL)
    _wait_gone(root, 2.0)
    return targets


def _wait_gone(root: int, seconds: float) -> list[int]:
    """Reap and poll until ``root`` has no descendants or ``seconds`` pass; returns the survivors."""
    deadline = time.monotonic() + seconds
    while True:
        _reap()
        alive = descendants(root)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _reap() -> None:
    """Collect exited orphans that were reparented to us (we are their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
