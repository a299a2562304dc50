"""torch's C++ extension build locks: a lock left by a killed build is removed before the next job, a live one
never is; each interpreter builds in its own root."""

from __future__ import annotations

import os
import time

from launcher.node import extensions


def test_only_locks_older_than_any_build_are_swept(tmp_path):
    old, fresh = tmp_path / "cpu_adam" / "lock", tmp_path / "fused_adam" / "lock"
    for lock in (old, fresh):
        lock.parent.mkdir()
        lock.touch()
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert extensions.sweep(str(tmp_path)) == [old]
    assert not old.exists() and fresh.exists()
    assert extensions.sweep(str(tmp_path / "missing")) == []


def test_each_interpreter_has_its_own_build_root():
    assert extensions.build_root("/venv/a") != extensions.build_root("/venv/b")
    assert extensions.build_root("/venv/a") == extensions.build_root("/venv/a")


def test_a_local_launch_builds_in_this_interpreters_root(cli, monkeypatch):
    monkeypatch.delenv(extensions.ENV, raising=False)
    result = cli("launch", "zero2", "--cpu", "--dry-run", "--json")
    assert result.exit_code == 0
    assert f'"{extensions.ENV}": "{extensions.build_root()}"' in result.stdout


def test_after_a_failed_job_only_the_locks_nobody_holds_are_swept(tmp_path):
    """A failed job's ranks are gone, so their build locks are stale; another job's build, running meanwhile
    (it keeps its lock file open, as torch's FileBaton does), keeps its lock."""
    started = time.time() - 1
    ours, theirs = tmp_path / "cpu_adam" / "lock", tmp_path / "shm_comm" / "lock"
    for lock in (ours, theirs):
        lock.parent.mkdir()
        lock.touch()
    (tmp_path / "via").symlink_to(theirs.parent)  # the builder may know the root by another path
    fd = os.open(tmp_path / "via" / "lock", os.O_RDONLY)
    try:
        assert extensions.sweep(str(tmp_path), since=started) == [ours]
        assert theirs.exists()
    finally:
        os.close(fd)
    assert extensions.sweep(str(tmp_path), since=started) == [theirs]
