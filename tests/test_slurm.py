"""launchdeck on a real Slurm cluster (slurm-wlm + munge, two fake nodes on this machine).

The fake nodes share this machine, so ranks meet on 127.0.0.1 (``--master-addr``); everything else
(node list, tasks per node, node ids, srun, sbatch) is Slurm's own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from .launching import processes_of, result

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
LAUNCH = [sys.executable, "-m", "launcher", "launch"]
RENDEZVOUS = ["--master-addr", "127.0.0.1"]  # both fake nodes are this machine


def test_launch_inside_salloc_trains_on_both_nodes(slurm, tmp_path):
    run_dir = tmp_path / "run"
    done = slurm.run(["salloc", "-N2", "--ntasks-per-node=2", *LAUNCH, "ddp", "--cpu", "--launcher", "slurm",
                      *RENDEZVOUS, "--steps", "8", "--run-dir", str(run_dir)], timeout=300, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = result(run_dir)
    assert r["world_size"] == 4 and r["loss_last"] < r["loss_first"] - 0.3 and r["params_identical"] is True
    plan = json.loads((run_dir / "plan.json").read_text())
    assert [node["host"] for node in plan["nodes"]] == slurm.node_names  # sizes and hosts from the allocation
    assert plan["commands"][0]["argv"][:2] == ["srun", "--kill-on-bad-exit=1"]
    assert {f"rank{i}.log" for i in range(4)} <= {p.name for p in (run_dir / "logs").iterdir()}


def test_a_failed_job_step_is_restarted_in_the_allocation_from_its_checkpoint(slurm, tmp_path):
    run_dir = tmp_path / "run"
    done = slurm.run(["salloc", "-N2", "--ntasks-per-node=2", *LAUNCH, "ddp", "--cpu", "--launcher", "slurm",
                      *RENDEZVOUS, "--steps", "12", "--save-every", "5", "--max-restarts", "1", "--crash-at", "3:8",
                      "--run-dir", str(run_dir)], timeout=300, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first, second = json.loads((run_dir / "outcome.json").read_text())["attempts"]
    assert (first["failure"]["rank"], first["failure"]["exit_code"]) == (3, 17) and second["resumed_from_step"] == 5
    assert result(run_dir)["start_step"] == 5 and result(run_dir)["world_size"] == 4
    assert (run_dir / "logs" / "attempt-1" / "rank3.log").is_file() and not processes_of(run_dir)


def test_a_failing_rank_ends_the_step_with_its_own_exit_code(slurm, tmp_path):
    run_dir = tmp_path / "run"
    started = time.monotonic()
    done = slurm.run(["salloc", "-N2", "--ntasks-per-node=2", *LAUNCH, "ddp", "--cpu", "--launcher", "slurm",
                      *RENDEZVOUS, "--steps", "100000", "--crash-at", "3:3", "--run-dir", str(run_dir)],
                     timeout=300, check=False, cwd=tmp_path)
    assert done.returncode == 17, done.stdout[-3000:] + done.stderr[-3000:]  # the rank's code, not srun's 143
    assert f"rank 3 on {slurm.node_names[1]}: exit code 17" in done.stderr
    assert "fault drill: rank 3 exits with 17 before step 3" in done.stderr
    assert not processes_of(run_dir)
    print(f"failing rank: salloc returned {done.returncode} after {time.monotonic() - started:.1f} s")


def batch(slurm, tmp_path: Path, name: str, *launch_args: str) -> str:
    """``launchdeck slurm`` → a batch script, validated by the controller with ``sbatch --test-only``."""
    script = slurm.run([sys.executable, "-m", "launcher", "slurm", "ddp", "--nodes", "2", "--gpus-per-node", "2",
                        "--cpu", "--time", "00:10:00", "--", *RENDEZVOUS, *launch_args], cwd=tmp_path).stdout
    path = tmp_path / f"{name}.sbatch"
    path.write_text(script)
    checked = slurm.run(["sbatch", "--test-only", str(path)], check=False, cwd=tmp_path)
    assert checked.returncode == 0 and "to start at" in checked.stderr, checked.stderr
    return str(path)


def test_the_batch_script_runs_under_sbatch_and_its_exit_code_is_the_jobs(slurm, tmp_path):
    good = batch(slurm, tmp_path, "good", "--steps", "6", "--run-dir", str(tmp_path / "good"))
    bad = batch(slurm, tmp_path, "bad", "--steps", "100000", "--crash-at", "1:2", "--run-dir", str(tmp_path / "bad"))
    jobs = {name: slurm.run(["sbatch", "--parsable", path], cwd=tmp_path).stdout.strip().split(";")[0]
            for name, path in (("good", good), ("bad", bad))}
    assert slurm.wait_job(jobs["good"], timeout=300) == "COMPLETED"
    assert slurm.job_exit_code(jobs["good"]) == (0, 0)
    assert result(tmp_path / "good")["world_size"] == 4
    assert slurm.wait_job(jobs["bad"], timeout=300) == "FAILED"
    assert slurm.job_exit_code(jobs["bad"]) == (17, 0)  # what `scontrol show job` (and sacct) show the user
    log = (tmp_path / f"launchdeck-ddp-{jobs['bad']}.out").read_text()
    assert "rank 1 on" in log and "exit code 17" in log
