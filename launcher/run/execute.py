"""The one place that starts processes: run a plan's commands, stream their output, watch every host,
stop everything when anything fails.

A plan's commands run here: one local torchrun, or what reaches the hosts (one ssh per node, one
pdsh, mpirun, srun or horovodrun). Each starts in its own session; its output is copied line by line
to ``logs/launcher.log`` and, until the job is being stopped, to the console (ssh lines prefixed with
the host), and the agents' events in it feed a ``Watch``. The first failure anywhere (a rank's exit,
a hung rank, a node that stops answering, a command that dies) stops the job on every host: commands
whose agent listens on stdin (ssh) have it closed, the others get SIGTERM, and whatever is left after
the grace period is killed. Remote agents tear their own process trees down when their connection goes. Ctrl-C
(SIGINT/SIGTERM/SIGHUP) stops the same way; a second one kills at once. Only this job's processes are
ever touched: its own commands and, on each host, its agent's descendants.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .. import entrypoints
from ..errors import MEANINGS, STALLED_EXIT
from ..node import events, processes, progress
from ..plan.model import Command, LaunchPlan
from . import remote, stacks
from .stall import STALLED, StallWatch
from .watch import Failure, Watch

GRACE_S = 10.0  # from stop to SIGKILL: more than an agent's own teardown (5 s grace + 2 s + relays)
REAP_TIMEOUT_S = 30.0
POLL_S = 0.1  # how long the supervisor waits for output before it looks at exits, hosts and signals
END_POLL_S = 0.005  # the same once a command's output has ended: its exit is seen at once (only we reap it)
PUMP_S = 0.05  # the longest one pass over the output may take: signals and failures are acted on in between
QUEUE_LINES = 10_000  # readers wait when this many lines are unhandled (a flood cannot eat the memory)
PIPE_LINGER_S = 2.0  # a command that exited while orphans hold its pipe is done after this long
TAIL = 400
READ_PROGRESS_S = 0.5  # how often a job on this machine has its ranks' progress records read


@dataclass(frozen=True)
class Outcome:
    """How a job ended: the launcher command's return code (0: every rank succeeded), how long it ran, whether
    the user interrupted it, and the first failure anywhere (None when nothing failed)."""

    returncode: int
    elapsed_s: float
    interrupted: bool
    failure: Failure | None
    run_dir: str = ""
    stalled: bool = False  # the job stopped making progress (launcher.run.stall) and was stopped for it
    progress: dict = field(default_factory=dict)  # the stall watch's summary (StallWatch.summary)
    lost_hosts: list[str] = field(default_factory=list)  # hosts whose agent stopped answering (or never started)
    attempts: list[dict] = field(default_factory=list)  # with --max-restarts: every attempt (launcher.run.restarts)


@dataclass
class Running:
    """One started command of the plan, and what it has said."""

    planned: Command
    proc: subprocess.Popen
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL))
    eof: bool = False
    exited_at: float | None = None
    done: bool = False


class _Signals:
    """Counts SIGINT/SIGTERM/SIGHUP while the job runs; the supervisor acts on the count."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, _frame: object) -> None:
        self.count += 1


class Job:
    """The plan's commands, started and stopped together."""

    def __init__(self, plan: LaunchPlan):
        self.plan, self.lines = plan, queue.Queue(maxsize=QUEUE_LINES)
        self.commands: list[Running] = []
        self.stopping_since: float | None = None
        self.killed = False
        self.next_read = 0.0  # when this machine's progress records are read next (no agents)

    def start(self) -> None:
        """Start every command, each in a session of its own."""
        for index, planned in enumerate(self.plan.commands):
            proc = subprocess.Popen(planned.argv, cwd=planned.cwd, env={**os.environ, **planned.env},
                                    stdin=subprocess.PIPE if planned.stop == "stdin" else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            self.commands.append(Running(planned, proc))
            threading.Thread(target=_read, args=(index, proc.stdout, self.lines), daemon=True).start()

    def stop(self, lost: set[str]) -> None:
        """Ask every command to end: close the control channel where there is one and its agent still
        listens, else SIGTERM (a remote agent then sees its connection go)."""
        self.stopping_since = time.monotonic()
        for command in self.running():
            if command.proc.stdin and not set(command.planned.agents) <= lost:
                _close(command.proc.stdin)
            else:
                _killpg(command.proc, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the commands and everything of ours below them (torch's ranks run in sessions of their own)."""
        self.killed = True
        for command in self.running():
            _killpg(command.proc, signal.SIGKILL)
        processes.signal_all(processes.descendants(os.getpid()), signal.SIGKILL)

    def running(self) -> list[Running]:
        return [c for c in self.commands if c.proc.poll() is None]

    def finished(self) -> list[Running]:
        """Commands that just became done: exited, and their output read (or abandoned to orphans)."""
        now, newly = time.monotonic(), []
        for command in self.commands:
            if command.done or command.proc.poll() is None:
                continue
            command.exited_at = command.exited_at or now
            if command.eof or now - command.exited_at > PIPE_LINGER_S:
                command.done = True
                newly.append(command)
        return newly

    def returncode(self) -> int:
        codes = [c.proc.returncode for c in self.commands if c.proc.returncode]
        return codes[0] if codes else 0


def _read(index: int, stream: IO[bytes], lines: queue.Queue) -> None:
    for raw in iter(stream.readline, b""):
        lines.put((index, raw.decode("utf-8", errors="replace")))
    lines.put((index, None))


def _close(stream: IO[bytes]) -> None:
    try:
        stream.close()
    except OSError:
        pass


def _killpg(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(plan: LaunchPlan, console=sys.stdout, time_limit: float | None = None) -> Outcome:
    """Run a plan; returns when every process of the job here is gone (and each host's agent has been
    told to stop). ``time_limit``: seconds after which a job still running is a failure ("timed out") and
    is stopped on every host like any other."""
    logs = Path(plan.run_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes.become_subreaper()
    started, watch, job, signals = time.monotonic(), Watch(plan), Job(plan), _Signals()
    with _log_file(logs / "launcher.log") as log:
        previous = {s: signal.signal(s, signals) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            job.start()
            _supervise(job, watch, signals, _Console(console, log), time_limit)
        finally:
            forced = job.killed  # commands that ignored the stop: their agents may be frozen too
            for command in job.running():  # only after an error in the loop itself
                _killpg(command.proc, signal.SIGKILL)
            processes.terminate_tree(grace=0.5 if forced else GRACE_S)  # orphans of this machine
            reap_frozen(plan, watch.unfinished(None if forced else watch.lost))
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    failure = watch.first(logs)
    stalled = failure is not None and failure.reason.startswith(STALLED)
    lost = sorted({watch.hosts[agent] for agent in watch.lost})
    return Outcome(job.returncode() or (1 if watch.failed else 0), time.monotonic() - started,
                   signals.count > 0, failure, plan.run_dir, stalled, watch.stall.summary(), lost)


@dataclass
class _Console:
    """Where the job's output goes: the console and ``logs/launcher.log``. A sink that fails (a full disk,
    a closed pipe) is dropped from then on; the job is not."""

    console: IO[str]
    log: IO[str]
    broken: set[int] = field(default_factory=set)  # ids of the sinks that failed

    def write(self, text: str, quiet: bool = False) -> None:
        """Every line goes to the log; the console is spared the collateral output of a teardown."""
        self._to(self.log, text, flush=False)
        if not quiet:
            self._to(self.console, text, flush=True)

    def _to(self, sink: IO[str], text: str, flush: bool) -> None:
        if id(sink) in self.broken:
            return
        try:
            sink.write(text)
            if flush:
                sink.flush()
        except OSError:
            self.broken.add(id(sink))


@contextlib.contextmanager
def _log_file(path: Path) -> Iterator[IO[str]]:
    """``path`` open for writing; closing it never fails the run (its last buffer may not fit a full disk)."""
    log = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed below, whatever the disk says)
    try:
        yield log
    finally:
        with contextlib.suppress(OSError):
            log.close()


def _supervise(job: Job, watch: Watch, signals: _Signals, out: _Console, time_limit: float | None) -> None:
    deadline = None if time_limit is None else time.monotonic() + time_limit
    while not all(c.done for c in job.commands):
        ending = any(c.eof and not c.done for c in job.commands)  # its exit follows its EOF within moments
        _pump(job, watch, out, timeout=END_POLL_S if ending else POLL_S)
        for command in job.finished():
            watch.on_exit(command.planned.agents, command.planned.name, command.proc.returncode,
                          list(command.tail))
        now = time.monotonic()
        if job.stopping_since is None:
            watch.check(now)
            _check_progress(job, watch, signals, now)
            if deadline is not None and now > deadline:
                watch.timed_out(time_limit)
            if signals.count:
                watch.frozen = True
            if watch.failed or signals.count:
                job.stop(watch.lost)
        elif not job.killed and (signals.count > 1 or now - job.stopping_since > GRACE_S):
            job.kill()


def _pump(job: Job, watch: Watch, out: _Console, timeout: float) -> None:
    """Handle the lines that arrived (waiting up to ``timeout`` for the first), for at most PUMP_S."""
    until = None
    while until is None or time.monotonic() < until:
        try:
            index, line = job.lines.get(timeout=timeout) if until is None else job.lines.get_nowait()
        except queue.Empty:
            return
        until = until or time.monotonic() + PUMP_S
        command = job.commands[index]
        if line is None:
            command.eof = True
        elif (event := events.decode(line, watch.tag)) is not None:
            watch.on_event(event, time.monotonic())
        else:
            watch.stall.output(time.monotonic())
            command.tail.append(line)
            out.write(command.planned.label + line, quiet=job.stopping_since is not None)


def _check_progress(job: Job, watch: Watch, signals: _Signals, now: float) -> None:
    """Read this machine's progress records (no agent carries them), then judge: a stalled job gets every
    rank's stack dumped and recorded before it is stopped like any other failure. A Ctrl-C before or
    during the dump wins: the user stopped the job."""
    if watch.failed or signals.count:
        return
    if not job.plan.agents and now >= job.next_read:
        job.next_read = now + READ_PROGRESS_S
        _read_records(job.plan, watch.stall, now)
    stall = watch.stall.check(now)
    if stall is None:
        return
    seen = time.time()
    dumps = stacks.gather(job.plan, _stack_roots(job, watch))
    stacks.write(Path(job.plan.run_dir) / "logs", dumps)
    if not signals.count:
        watch.stalled_now(stall, stacks.summaries(stall, dumps, job.plan.world_size, watch.rank_hosts), seen)


def _read_records(plan: LaunchPlan, stall: StallWatch, now: float) -> None:
    directory = plan.nodes[0].env.get(progress.ENV) if plan.nodes else None
    if directory is None:
        return
    for rank in range(plan.world_size):
        position = progress.read(directory, rank)
        if position is not None:
            stall.report(rank, position, now)


def _stack_roots(job: Job, watch: Watch) -> dict[str, list[int]]:
    """host -> the processes the ranks run below: each host's agents, or this machine's own commands."""
    if job.plan.agents:
        return watch.unfinished()
    return {job.plan.nodes[0].host: [command.proc.pid for command in job.running()]}


def reap_frozen(plan: LaunchPlan, unfinished: dict[str, list[int]]) -> None:
    """Agents that never reported an exit may be frozen, their ranks still below them: kill those trees
    on their hosts (``launcher.node.reap`` checks that each pid still is this job's agent)."""
    args = {host: ["--run-dir", plan.run_dir, *map(str, pids)] for host, pids in unfinished.items()}
    remote.on_each(remote.reachable(plan, list(args)),
                   lambda host: remote.run_module(plan, host, entrypoints.REAP, args[host], REAP_TIMEOUT_S))


def report(outcome: Outcome) -> str:
    """One report: which rank (or node) failed first, how, and the last lines of its log."""
    if outcome.failure is None:
        how = "interrupted" if outcome.interrupted else f"exited with code {outcome.returncode}"
        return f"launchdeck: job {how} after {outcome.elapsed_s:.1f} s\n"
    f = outcome.failure
    who = f"rank {f.rank} on {f.host}" if f.rank is not None else f.host
    if f.exit_code is None:
        what = f.reason
    else:
        code = f"signal {signal.Signals(-f.exit_code).name}" if f.exit_code < 0 else f"exit code {f.exit_code}"
        reason = f.reason or MEANINGS.get(f.exit_code, "")
        what = f"{code} ({reason})" if reason else code
    lines = [f"launchdeck: job failed after {outcome.elapsed_s:.1f} s: {who}: {what}; every other rank was stopped"]
    lines += _stacks(f, Path(outcome.run_dir)) if f.stacks else _tails(f)
    return "\n".join(lines) + "\n"


def _stacks(f: Failure, run_dir: Path) -> list[str]:
    """A stall: where each rank was, one line each (the full dumps are in the run record)."""
    return [f"--- where each rank was (full stacks: {run_dir / 'logs' / 'stall'}) ---", *(f"  {s}" for s in f.stacks)]


def _tails(f: Failure) -> list[str]:
    lines = []
    for path, tail in f.log_tails.items():
        lines.append(f"--- last lines of {path} ---")
        lines += [f"  {line}" for line in tail]
    return lines


def exit_code_for(outcome: Outcome) -> int:
    """The failing rank's own code when it has one, else the launcher command's; 130 after Ctrl-C; 19 when
    the job stalled."""
    if outcome.returncode == 0:
        return 0
    if outcome.stalled:
        return STALLED_EXIT
    if outcome.failure and outcome.failure.exit_code and 0 < outcome.failure.exit_code < 256:
        return outcome.failure.exit_code
    return 130 if outcome.interrupted else (outcome.returncode if 0 < outcome.returncode < 256 else 1)
