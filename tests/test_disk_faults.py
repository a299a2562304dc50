"""Disk faults, for real (root: a small tmpfs and a read-only bind mount): a checkpoint that fills the disk
is one clear line and exit 20, the previous checkpoint stays the latest and loads; a read-only run
directory root is one line and exit 2 before anything starts."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from launcher.errors import CHECKPOINT_EXIT

from .launching import launchdeck, processes_of, result

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs and a read-only bind mount (root)")

TMPFS = "40m"  # one checkpoint of the tiny model under ddp (22 MB) fits, a second does not


@contextlib.contextmanager
def mounted(target: Path, *args: str):
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.slow
def test_a_checkpoint_that_fills_the_disk_is_one_line_and_the_previous_one_loads(tmp_path):
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", f"size={TMPFS}", "tmpfs") as small:
        run_dir = small / "run"
        done = launchdeck("launch", "ddp", "--cpu", "--steps", "12", "--save-every", "2", "--run-dir", str(run_dir),
                          cwd=tmp_path)
        assert done.returncode == CHECKPOINT_EXIT, done.stderr[-3000:]
        report = done.stderr[done.stderr.index("launchdeck: job failed"):].splitlines()
        assert report[0].endswith("rank 0 on localhost: exit code 20 (a checkpoint could not be written); every "
                                  "other rank was stopped")
        assert any(line.strip() == f"launchdeck: checkpoint of step 4 not written: no space left on device (0 MiB "
                   f"free under {run_dir / 'checkpoints'}); the latest complete one is still "
                   f"{run_dir / 'checkpoints' / 'step-000002'}" for line in report), report
        checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
        assert checkpoints == ["latest", "step-000002"]  # the partial save is gone, its space given back
        assert (run_dir / "outcome.json").is_file() and not processes_of(run_dir)
        again = launchdeck("launch", "ddp", "--cpu", "--steps", "6", "--resume", str(run_dir), "--run-dir",
                           str(tmp_path / "resumed"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stdout and result(tmp_path / "resumed")["start_step"] == 2


def test_a_read_only_run_directory_root_is_one_line_before_anything_starts(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    with mounted(tmp_path / "ro", "--bind", str(source)) as ro:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        done = launchdeck("launch", "ddp", "--cpu", "--steps", "2", "--run-dir", str(ro / "run"), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"launchdeck: error: cannot create run directory {ro / 'run'}: Read-only "
                                        "file system"]
    assert not any(source.iterdir())
