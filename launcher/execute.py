"""The one place that starts processes: run a plan, stream and log its output, stop it cleanly.

Signals: the first SIGINT/SIGTERM/SIGHUP asks this job's torchrun to stop its ranks (SIGTERM to its
process group); a second one, or anything still alive after the grace period, is SIGKILLed. Only
processes descended from this launcher are touched.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import processes
from .plan import LaunchPlan

GRACE_S = 8.0
_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):.*?host\s*:\s*(\S+).*?rank\s*:\s*(\d+)"
                         r".*?exitcode\s*:\s*(-?\d+)", re.S)  # torch elastic's ChildFailedError table
_HOROVOD_FIRST = re.compile(r"The first process to do so was:\s*Process name: (\d+)\s*Exit code: (-?\d+)")


@dataclass(frozen=True)
class Failure:
    host: str
    rank: int
    exit_code: int
    log_tails: dict[str, list[str]]  # log path -> its last lines (stderr first, then stdout)


@dataclass(frozen=True)
class Outcome:
    returncode: int
    elapsed_s: float
    interrupted: bool
    failure: Failure | None


class _Stopper:
    """Turns signals into a staged stop of one process group."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.count = proc, 0

    def __call__(self, signum: int, _frame: object) -> None:
        self.count += 1
        sig = signal.SIGTERM if self.count == 1 else signal.SIGKILL
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        if self.count > 1:
            processes.signal_all(processes.descendants(os.getpid()), signal.SIGKILL)


def run(plan: LaunchPlan, console=sys.stdout) -> Outcome:
    """Run a plan whose commands run on this machine; returns when every process of the job is gone."""
    (command,), node = plan.commands, plan.nodes[0]
    logs = Path(plan.run_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes.become_subreaper()
    started = time.monotonic()
    with open(logs / "launcher.log", "w", encoding="utf-8") as launcher_log:
        proc = subprocess.Popen(command, cwd=node.cwd, env={**os.environ, **node.env}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        stopper = _Stopper(proc)
        previous = {s: signal.signal(s, stopper) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            tail = _pump(proc, console, launcher_log)
            returncode = proc.wait()
        finally:
            processes.terminate_tree(grace=GRACE_S)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    failure = find_failure("".join(tail), logs) if returncode else None
    return Outcome(returncode, time.monotonic() - started, stopper.count > 0, failure)


def _pump(proc: subprocess.Popen, console, log) -> list[str]:
    """Copy the agent's output to the console and launcher.log; keep the last lines for the report."""
    tail: list[str] = []
    for raw in iter(proc.stdout.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        log.write(line)
        console.write(line)
        console.flush()
        tail = (tail + [line])[-200:]
    proc.stdout.close()
    return tail


def find_failure(agent_output: str, logs: Path, lines: int = 12) -> Failure | None:
    """The first failed rank as torch elastic (or horovodrun) reports it, with the end of its logs."""
    match = _ROOT_CAUSE.search(agent_output)
    if match:
        host, rank, code = match.group(1), int(match.group(2)), int(match.group(3))
        candidates = (logs / f"rank{rank}.err.log", logs / f"rank{rank}.log")
    elif match := _HOROVOD_FIRST.search(agent_output):
        host, rank, code = "localhost", int(match.group(1)), int(match.group(2))
        candidates = (logs / "horovod" / f"rank.{rank}" / "stderr", logs / "horovod" / f"rank.{rank}" / "stdout")
    else:
        return None
    tails = {}
    for path in candidates:
        text = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()] if path.is_file() else []
        if text:
            tails[str(path)] = text[-lines:]
    return Failure(host, rank, code, tails)


def report(outcome: Outcome) -> str:
    """One report: which rank failed first, how, and the last lines of its log."""
    if outcome.failure is None:
        how = "interrupted" if outcome.interrupted else f"exited with code {outcome.returncode}"
        return f"launchdeck: job {how} after {outcome.elapsed_s:.1f} s\n"
    f = outcome.failure
    code = f"signal {signal.Signals(-f.exit_code).name}" if f.exit_code < 0 else f"exit code {f.exit_code}"
    lines = [f"launchdeck: job failed after {outcome.elapsed_s:.1f} s: rank {f.rank} on {f.host}: {code}; "
             "every other rank was stopped"]
    for path, tail in f.log_tails.items():
        lines.append(f"--- last lines of {path} ---")
        lines += [f"  {line}" for line in tail]
    return "\n".join(lines) + "\n"


def exit_code_for(outcome: Outcome) -> int:
    """The failing rank's own code when it has one, else the agent's; 130 after Ctrl-C."""
    if outcome.returncode == 0:
        return 0
    if outcome.failure and 0 < outcome.failure.exit_code < 256:
        return outcome.failure.exit_code
    return 130 if outcome.interrupted else (outcome.returncode if 0 < outcome.returncode < 256 else 1)
