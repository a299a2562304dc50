"""Restarts (``launch --max-restarts``): a job that loses a rank, or a rank in the middle of a checkpoint, starts
again from its run's latest complete checkpoint and ends where an uninterrupted run of the same steps ends.

The oracle is that uninterrupted run: same strategy, seed, data and steps, fp32. Every attempt stays in the run
record (``logs/attempt-K/``, ``outcome.json``'s ``attempts``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from launcher.node import progress
from launcher.plan.prepare import prepare
from launcher.plan.request import LaunchRequest
from launcher.run import record

from .launching import launchdeck, processes_of, result, start, wait_for
from .trials import rank_pid

STEPS, SAVE_EVERY = "14", "5"
COMMON = ["--cpu", "--nproc", "2", "--steps", STEPS, "--save-every", SAVE_EVERY, "--set", "training.precision=fp32",
          "--set", "training.log_interval=1"]
LOSS_TOLERANCE = 1e-5  # ZeRO's reductions on CPU: equal in practice, a margin for the order of the sums


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """strategy -> the result of an uninterrupted run of the same steps (run once per strategy)."""
    root, results = tmp_path_factory.mktemp("uninterrupted"), {}

    def get(strategy: str) -> dict:
        if strategy not in results:
            done = launchdeck("launch", strategy, *COMMON, "--run-dir", str(root / strategy), cwd=root)
            assert done.returncode == 0, done.stderr[-3000:]
            results[strategy] = result(root / strategy)
        return results[strategy]

    return get


def _attempts(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "outcome.json").read_text())["attempts"]


def _same_training(restarted: dict, reference: dict, exact: bool) -> float:
    """The restarted run ends where the uninterrupted one does: its losses from the resumed step on, and its
    final parameters. Returns the largest loss difference."""
    tail = reference["losses"][-len(restarted["losses"]):]
    worst = max(abs(a - b) for a, b in zip(restarted["losses"], tail, strict=True))
    assert worst <= (0.0 if exact else LOSS_TOLERANCE), (restarted["losses"], tail)
    if exact:
        assert restarted["param_digests"] == reference["param_digests"]
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "zero2", "zero3"])
def test_kill_9_of_a_rank_restarts_from_the_checkpoint_and_ends_like_an_uninterrupted_run(strategy, tmp_path,
                                                                                           uninterrupted):
    run_dir = tmp_path / "run"
    proc = start("launch", strategy, *COMMON, "--max-restarts", "1", "--run-dir", str(run_dir), cwd=tmp_path,
                 log=tmp_path / "out")
    past_the_checkpoint = lambda: (p := progress.read(run_dir / "progress", 1)) and p.done >= 7  # noqa: E731
    assert wait_for(past_the_checkpoint, 240, 0.05), (tmp_path / "out").read_text()[-3000:]
    struck = time.time()
    os.kill(rank_pid(run_dir, 1), signal.SIGKILL)
    archived = lambda: (run_dir / "logs" / "attempt-1").is_dir()  # noqa: E731 (then progress/ is the restart's)
    stepped = lambda: (p := progress.read(run_dir / "progress", 0)) and p.done >= 1  # noqa: E731
    assert wait_for(archived, 240, 0.05) and wait_for(stepped, 240, 0.05), (tmp_path / "out").read_text()[-3000:]
    back_s = time.time() - struck  # from the kill to the first step the restarted job finished
    assert proc.wait(timeout=300) == 0, (tmp_path / "out").read_text()[-3000:]
    first, second = _attempts(run_dir)
    assert first["failure"]["rank"] == 1 and first["failure"]["exit_code"] == -signal.SIGKILL
    assert first["restart"] == "restarted" and first["logs"] == str(run_dir / "logs" / "attempt-1")
    assert second["resumed_from_step"] == 5 and second["restart"] == "succeeded"
    assert (run_dir / "logs" / "attempt-1" / "rank1.log").is_file() and (run_dir / "logs" / "rank1.log").is_file()
    restarted = result(run_dir)
    assert restarted["start_step"] == 5 and restarted["steps"] == int(STEPS)
    worst = _same_training(restarted, uninterrupted(strategy), exact=strategy == "ddp")
    assert not processes_of(run_dir)
    print(f"{strategy}: kill -9 of rank 1 after step 7, resumed from step 5: max |loss diff| {worst:.2e}; "
          f"from the kill to the first step after the restart {back_s:.1f} s")


@pytest.mark.slow
def test_a_rank_killed_while_saving_resumes_from_the_previous_complete_checkpoint(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    done = launchdeck("launch", "zero2", *COMMON, "--max-restarts", "1", "--crash-at", "1:10:save", "--run-dir",
                      str(run_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exits with 17 while saving step 10" in (run_dir / "logs" / "attempt-1" / "rank1.log").read_text()
    first, second = _attempts(run_dir)
    assert first["failure"]["exit_code"] == 17 and second["resumed_from_step"] == 5  # step 10 never completed
    assert "restart 1/1 from step 5" in done.stderr
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", "step-000005", "step-000010",
                                                                           "step-000014"]
    _same_training(result(run_dir), uninterrupted("zero2"), exact=False)


def test_a_failure_that_repeats_uses_every_restart_and_keeps_every_attempt(tmp_path):
    (tmp_path / "fails.py").write_text("import os, sys\nprint('attempt', os.environ['LAUNCHDECK_ATTEMPT'] "
                                       "if 'LAUNCHDECK_ATTEMPT' in os.environ else 1)\nsys.exit(3)\n")
    run_dir = tmp_path / "run"
    done = launchdeck("launch", "ddp", "--cpu", "--nproc", "1", "--max-restarts", "2", "--run-dir", str(run_dir),
                      "--", "fails.py", cwd=tmp_path)
    assert done.returncode == 3, done.stderr[-2000:]
    attempts = _attempts(run_dir)
    assert [a["number"] for a in attempts] == [1, 2, 3]
    assert [a["restart"] for a in attempts] == ["restarted", "restarted", "not restarted: all 2 restart(s) used"]
    assert all(a["failure"]["exit_code"] == 3 and a["resumed_from_step"] is None for a in attempts)
    for number in (1, 2):
        log = run_dir / "logs" / f"attempt-{number}" / "rank0.log"
        assert f"attempt {number}" in log.read_text()
    assert "attempt 3" in (run_dir / "logs" / "rank0.log").read_text()
    assert done.stderr.count("launchdeck: attempt ") == 3 and "job failed" in done.stderr


def test_ctrl_c_is_never_restarted(tmp_path):
    (tmp_path / "sleeps.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    run_dir = tmp_path / "run"
    proc = start("launch", "ddp", "--cpu", "--nproc", "1", "--max-restarts", "3", "--run-dir", str(run_dir), "--",
                 "sleeps.py", cwd=tmp_path, log=tmp_path / "out")
    assert wait_for(lambda: "up" in (tmp_path / "out").read_text(), 60), (tmp_path / "out").read_text()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    (only,) = _attempts(run_dir)
    assert only["restart"] == "not restarted: interrupted"
    assert not (run_dir / "logs" / "attempt-1").exists()


@pytest.mark.slow
def test_the_elastic_per_node_torchrun_lines_restart_and_resume_by_themselves(tmp_path, uninterrupted):
    """What a scheduler without ssh runs (--launcher torchrun --max-restarts): each node's printed line, run as
    it is, two nodes on this machine. Rank 1 crashes; torchrun restarts both worker groups through c10d and
    the payload resumes from the run's checkpoint by itself, ending where an uninterrupted run ends."""
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost slots=1\n127.0.0.1 slots=1\n")
    run_dir = tmp_path / "run"
    request = LaunchRequest("ddp", overrides=("training.precision=fp32", "training.log_interval=1"), cpu=True,
                            steps=int(STEPS), save_every=int(SAVE_EVERY), hostfile=str(hosts), launcher="torchrun",
                            max_restarts=1, run_dir=str(run_dir), crash_at="1:8")
    prepared = prepare(request)
    record.create(run_dir)
    record.write_inputs(prepared.plan, prepared.rendered)  # what `launchdeck render` gives a scheduler
    outputs = [open(tmp_path / f"node{index}.out", "w") for index in range(2)]  # noqa: SIM115 (closed below)
    nodes = [subprocess.Popen(node.argv, cwd=node.cwd, env={**os.environ, **node.env}, stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True)
             for node, out in zip(prepared.plan.nodes, outputs, strict=True)]
    try:
        codes = [node.wait(timeout=240) for node in nodes]
        assert codes == [0, 0], "".join((tmp_path / f"node{i}.out").read_text()[-3000:] for i in range(2))
    finally:
        for node, out in zip(nodes, outputs, strict=True):
            node.kill()
            out.close()
    restarted = result(run_dir)
    assert restarted["start_step"] == 5 and restarted["world_size"] == 2
    assert "exits with 17 before step 8" in (run_dir / "logs" / "rank1.log").read_text()
    restarted_logs = (path.read_text() for path in (run_dir / "logs").glob("restart-*/rank0.log"))
    assert any("resumed from" in text for text in restarted_logs)  # restart-K: K counts per agent (torch's own)
    _same_training(restarted, uninterrupted("ddp"), exact=True)


@pytest.mark.slow
def test_a_stalled_job_is_restarted_with_its_stacks_kept(tmp_path):
    run_dir = tmp_path / "run"
    done = launchdeck("launch", "ddp", *COMMON, "--max-restarts", "1", "--stall-at", "1:8", "--stall-timeout", "3",
                      "--run-dir", str(run_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = _attempts(run_dir)
    assert first["failure"]["reason"].startswith("stalled: ") and second["resumed_from_step"] == 5
    assert "stall_drill" in (run_dir / "logs" / "attempt-1" / "stall" / "rank1.txt").read_text()
    assert result(run_dir)["steps"] == int(STEPS)
