"""Helpers for tests that launch real jobs: run launchdeck as a process, read run records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from launcher.entrypoints import AGENT, PAYLOAD
from launcher.node import processes, rankenv

LAUNCH_TIMEOUT_S = 300


def launchdeck(*args: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = LAUNCH_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def start(*args: str, cwd: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "launcher", *args], cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def job_pids(cluster, host, run_dir: Path) -> list[int]:
    """This job's processes on one fake host (agents, torchrun, ranks)."""
    return processes_of(run_dir, cluster.pids(host))


def payload_pid(cluster, host, run_dir: Path, rank: int) -> int | None:
    """The payload process of ``rank``: not its agent, which carries the same rank variables, nor its DataLoader
    workers, forked from it with the same command line (once PIDs wrap, a worker can have the lower PID)."""
    found = [pid for pid in job_pids(cluster, host, run_dir) if _is_payload(pid, rank)]
    parents = processes.parents_of(found)
    return next((pid for pid in found if parents.get(pid) not in found), None)


def _is_payload(pid: int, rank: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return PAYLOAD.encode() in argv and AGENT.encode() not in argv and \
        rankenv.lookup(processes.environ(pid), "RANK") == rank


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(step)
    return None


def processes_of(run_dir: Path, pids: list[int] | None = None) -> list[int]:
    """Live processes (of ``pids``, default all) whose environment names this run directory: any rank,
    agent or child of the job."""
    if pids is None:
        pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return [pid for pid in pids if processes.environ(pid).get("LAUNCHDECK_RUN_DIR") == str(run_dir)]
