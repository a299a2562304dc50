"""Horovod for real: the compiled build, the payload under horovodrun, teardown. Never skipped:
`make test` builds Horovod first, so a broken build fails here instead of hiding."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from launcher.spec.engines import horovod

from .launching import launchdeck, processes_of, result

pytestmark = pytest.mark.slow
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")


def test_horovod_is_a_real_build_with_pytorch_and_gloo():
    assert horovod.SPEC.missing_here() is None
    check = subprocess.run([HOROVODRUN, "--check-build"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert "[X] PyTorch" in check.stdout and "[X] Gloo" in check.stdout, check.stdout


@pytest.mark.parametrize("compression", ["none", "fp16"])
def test_horovod_strategy_trains_through_horovodrun(compression, tmp_path):
    run_dir = tmp_path / "run"
    done = launchdeck("launch", "horovod", "--cpu", "--steps", "12", "--grad-accum", "2", "--set",
                      f"horovod.compression={compression}", "--run-dir", str(run_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = result(run_dir)
    assert (r["engine"], r["world_size"], r["steps"]) == ("horovod", 2, 12)
    assert all(math.isfinite(x) for x in r["losses"])
    assert sum(r["losses"][-3:]) / 3 < sum(r["losses"][:3]) / 3 - 0.3
    assert r["params_identical"] is True and len(r["param_digests"]) == 2
    plan = (run_dir / "plan.json").read_text()
    assert "horovodrun" in plan and "--fusion-threshold-mb" in plan


def test_a_crashing_horovod_rank_ends_the_job(tmp_path):
    run_dir = tmp_path / "run"
    done = launchdeck("launch", "horovod", "--cpu", "--steps", "30", "--crash-at", "1:3", "--run-dir",
                      str(run_dir), cwd=tmp_path)
    assert done.returncode == 17
    assert "rank 1 on localhost: exit code 17" in done.stderr
    assert "fault drill: rank 1 exits with 17 before step 3" in done.stderr
    assert (run_dir / "logs" / "rank0.log").is_file() and (run_dir / "logs" / "rank1.err.log").is_file()
    assert not processes_of(run_dir)
