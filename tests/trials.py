"""Concurrency and failure trials on this machine, each repeated: the test suite runs a few
(tests/test_trials.py), `make stress` runs many (benchmarks/stress.py). Each trial returns one row.

- two launches started at the same instant in one directory: both train, each in its own run
  directory, on its own port, with its own records (nothing shared is clobbered);
- Ctrl-C of one of two running jobs: it is gone within TEARDOWN_S, the other keeps training and ends well;
- kill -9 of a random rank: every process of the job gone within TEARDOWN_S, the report names the rank,
  no orphan.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from launcher.entrypoints import PAYLOAD
from launcher.node import processes, progress, rankenv

from .launching import processes_of, wait_for

TEARDOWN_S = 10.0
LONG = ["--steps", "100000", "--set", "training.log_interval=1"]


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "launcher", "launch", "ddp", "--cpu", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished_steps(run_dir: Path) -> int:
    records = [progress.read(run_dir / "progress", rank) for rank in range(2)]
    return min((r.done for r in records if r is not None), default=0) if all(records) else 0


def same_instant(root: Path, index: int) -> dict:
    """Two launches at once, no --run-dir: each must get a run directory, a port and records of its own."""
    cwd = root / f"same-{index}"
    cwd.mkdir()
    jobs = [_start(cwd, "--steps", "4") for _ in range(2)]
    outs = [job.communicate(timeout=300) for job in jobs]
    runs = sorted((cwd / "runs").iterdir())
    plans = [json.loads((run / "plan.json").read_text()) for run in runs]
    results = [json.loads((run / "result.json").read_text()) for run in runs if (run / "result.json").is_file()]
    return {"trial": index, "exits": [job.returncode for job in jobs], "run_dirs": len(runs),
            "ports": len({plan["master_port"] for plan in plans}), "results": len(results),
            "own_records": all(plan["run_dir"] == str(run) for plan, run in zip(plans, runs, strict=True)),
            "stderr": [err[-500:] for _, err in outs if err and "run record" not in err]}


def ctrl_c_one(root: Path, index: int) -> dict:
    """Ctrl-C of job A while B trains on the same machine: A is gone, B goes on and ends with exit 0."""
    a_dir, b_dir = root / f"ctrlc-{index}-a", root / f"ctrlc-{index}-b"
    a = _start(root, *LONG, "--run-dir", str(a_dir))
    b = _start(root, "--steps", "60", "--set", "training.log_interval=1", "--run-dir", str(b_dir))
    wait_for(lambda: _finished_steps(a_dir) >= 2 and _finished_steps(b_dir) >= 2, 240, 0.2)
    struck = time.monotonic()
    a.send_signal(signal.SIGINT)
    a.communicate(timeout=60)
    gone = wait_for(lambda: not processes_of(a_dir), TEARDOWN_S)
    teardown = time.monotonic() - struck
    before = _finished_steps(b_dir)
    moved = wait_for(lambda: _finished_steps(b_dir) > before, 30, 0.2)
    b.communicate(timeout=300)
    return {"trial": index, "a_exit": a.returncode, "a_gone": bool(gone), "teardown_s": teardown,
            "b_moved_after": bool(moved), "b_exit": b.returncode, "orphans": len(processes_of(a_dir))}


def rank_pid(run_dir: Path, rank: int) -> int | None:
    """The payload process of ``rank`` in this run (not its children)."""
    for pid in processes_of(run_dir):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = processes.parents_of([pid]).get(pid)
        if PAYLOAD.encode() in argv and rankenv.lookup(processes.environ(pid), "RANK") == rank and \
                rankenv.lookup(processes.environ(parent), "RANK") != rank:
            return pid
    return None


def kill_rank(root: Path, index: int, rng: random.Random) -> dict:
    """kill -9 of a random rank: the job ends, the report names the rank, nothing is left."""
    run_dir, rank = root / f"kill-{index}", rng.randrange(2)
    job = _start(root, *LONG, "--run-dir", str(run_dir))
    wait_for(lambda: _finished_steps(run_dir) >= 2, 240, 0.2)
    victim = rank_pid(run_dir, rank)
    struck = time.monotonic()
    processes.signal_all([victim] if victim else [], signal.SIGKILL)
    gone = wait_for(lambda: job.poll() is not None and not processes_of(run_dir), TEARDOWN_S)
    teardown = time.monotonic() - struck
    _, err = job.communicate(timeout=60)
    return {"trial": index, "rank": rank, "found": victim is not None, "exit": job.returncode, "gone": bool(gone),
            "teardown_s": teardown, "named": f"rank {rank} on localhost: signal SIGKILL" in err,
            "orphans": len(processes_of(run_dir))}
