"""The progress contract between a rank and whoever watches it: one small file per rank.

A rank under ``launchdeck launch`` finds ``$LAUNCHDECK_PROGRESS_DIR`` in its environment and keeps
``rank<R>`` there up to date: the last step it finished, the step it is working on, and when (its
host's wall clock). One ``pwrite`` of a fixed-size record per change: no collective, no socket, a few
microseconds. The node's agent (or, for a job on this machine, the launcher) reads the records and
the launcher's stall watch judges them (:mod:`launcher.run.stall`).

A user's script reports with one call, a no-op outside a launchdeck job::

    import launcher
    launcher.progress(step)                  # this rank finished ``step``
    launcher.progress(step, begin=True)      # optional: it starts ``step`` (names a rank that never did)
    launcher.progress(step, saving=True)     # finished ``step`` and saves a checkpoint: not judged until
                                             # the next call

The rank also registers a ``faulthandler`` dump of every thread on SIGUSR1 into ``rank<R>.stack``
next to its record (unless it handles SIGUSR1 itself): the fallback when ``py-spy`` cannot attach
(:mod:`launcher.node.stacks`).
Stdlib only.
"""

from __future__ import annotations

import atexit
import faulthandler
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from . import rankenv

ENV = "LAUNCHDECK_PROGRESS_DIR"
RECORD = 64  # bytes: "DONE WORKING STATE TIME", space-padded, newline-terminated; rewritten in place
STATES = ("start", "train", "save", "finished")  # judged: train; start, save and finished are not
JUDGED = "train"
STACK_SIGNAL = signal.SIGUSR1


@dataclass(frozen=True)
class Position:
    """Where one rank is: the last step it finished, the step it works on, its state, and when it said so."""

    done: int
    working: int
    state: str
    t: float  # the rank's host's wall clock

    def encode(self) -> bytes:
        return f"{self.done} {self.working} {self.state} {self.t:.3f}".ljust(RECORD - 1).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> Position | None:
        """None for an empty, torn or foreign record."""
        try:
            done, working, state, t = data.decode().split()
            position = cls(int(done), int(working), state, float(t))
        except ValueError:
            return None
        return position if state in STATES and position.done >= 0 and position.working >= position.done else None

    def as_list(self) -> list:
        """The compact form an agent's heartbeat carries."""
        return [self.done, self.working, self.state, self.t]

    @classmethod
    def from_list(cls, items: object) -> Position | None:
        if not isinstance(items, list) or len(items) != 4:
            return None
        return cls.decode(" ".join(map(str, items)).encode())


def path(directory: str | Path, rank: int) -> Path:
    return Path(directory) / f"rank{rank}"


def stack_path(directory: str | Path, rank: int) -> Path:
    return Path(directory) / f"rank{rank}.stack"


def read(directory: str | Path, rank: int) -> Position | None:
    try:
        with open(path(directory, rank), "rb") as f:
            return Position.decode(f.read(RECORD))
    except OSError:
        return None


class Reporter:
    """A rank's side of the contract: its record, rewritten in place at each change."""

    def __init__(self, directory: str | Path, rank: int):
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path(directory, rank), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.done = self.working = 0
        self._register_stacks(directory, rank)
        atexit.register(self.finished)  # a script that returns is no longer judged (the payload says so itself)
        self._write("start")  # from now on the rank is judged by its progress, not by its output

    def begin(self, step: int) -> None:
        """This rank has its inputs for ``step`` and starts computing it (joins its collectives)."""
        self.working = step
        self._write("train")

    def finished_step(self, step: int) -> None:
        self.done, self.working = step, max(step, self.working)
        self._write("train")

    def saving(self) -> None:
        """A checkpoint save starts: not judged (a large model's can take minutes) until the next call."""
        self._write("save")

    def finished(self) -> None:
        """Every step is done: what follows (shutdown) is no longer judged."""
        self._write("finished")

    def _write(self, state: str) -> None:
        os.pwrite(self.fd, Position(self.done, self.working, state, time.time()).encode(), 0)

    def _register_stacks(self, directory: str | Path, rank: int) -> None:
        """faulthandler on SIGUSR1, unless the process already handles SIGUSR1 (Slurm's or Lightning's requeue):
        then its ``.stack`` file does not exist and the fallback never sends the signal."""
        if signal.getsignal(STACK_SIGNAL) is not signal.SIG_DFL:
            return
        self._stacks = open(stack_path(directory, rank), "w")  # noqa: SIM115 (open for the process's life)
        faulthandler.register(STACK_SIGNAL, file=self._stacks, all_threads=True)


class Silent(Reporter):
    """The reporter outside a launchdeck job (or with ``--stall-timeout 0``): every call does nothing."""

    def __init__(self) -> None:
        self.done = self.working = 0

    def _write(self, state: str) -> None:
        pass


_reporter: Reporter | None = None


def from_env() -> Reporter:
    """This process's reporter, made on first use from ``$LAUNCHDECK_PROGRESS_DIR`` and the rank's variables;
    :class:`Silent` outside a launchdeck job."""
    global _reporter
    if _reporter is None:
        directory, rank = os.environ.get(ENV), rankenv.lookup(os.environ, "RANK")
        _reporter = Reporter(directory, rank) if directory and rank is not None else Silent()
    return _reporter


def report(step: int, begin: bool = False, saving: bool = False) -> None:
    """This rank finished ``step`` (``begin``: starts it; ``saving``: saves a checkpoint after it)."""
    reporter = from_env()
    if begin:
        reporter.begin(step)
        return
    reporter.finished_step(step)
    if saving:
        reporter.saving()
