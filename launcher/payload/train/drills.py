"""Fault drills: make one rank fail on purpose, so restarts, stall detection and teardown can be seen working.

``--crash-at RANK:STEP`` exits with code 17 before STEP; ``--crash-at RANK:STEP:save`` exits in the middle of
the checkpoint of STEP (its part written, the checkpoint not yet complete); ``--stall-at RANK:STEP`` blocks
before STEP, alive and runnable, so the others wait in the next collective. Each drill fires once per run
(a marker under the run directory's ``drills/``): a worker group restarted by torchrun runs without it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

CRASH_EXIT_CODE = 17


@dataclass(frozen=True)
class Drills:
    """This rank's fault drills: the step to exit before, the checkpoint to exit in, the step to block before."""

    rank: int
    crash_before: int | None = None
    crash_in_save: int | None = None
    stall_before: int | None = None
    marks: Path | None = None  # where fired drills are marked (None: no run directory, they always fire)

    @classmethod
    def parse(cls, rank: int, crash_at: str | None, stall_at: str | None, run_dir: str | None) -> Drills:
        crash, stall = _mine(rank, crash_at), _mine(rank, stall_at)
        in_save = crash is not None and crash[1] == "save"
        return cls(rank, None if crash is None or in_save else crash[0], crash[0] if in_save else None,
                   None if stall is None else stall[0], Path(run_dir) / "drills" if run_dir else None)

    def before_step(self, step: int) -> None:
        """Called before step ``step`` (from 1)."""
        if step == self.crash_before and self._first(f"crash-{step}"):
            _exit(f"fault drill: rank {self.rank} exits with {CRASH_EXIT_CODE} before step {step}")
        if step == self.stall_before and self._first(f"stall-{step}"):
            print(f"fault drill: rank {self.rank} blocks before step {step}", flush=True)
            stall_drill()

    def saving(self, step: int) -> None:
        """Called once this rank has written its part of the checkpoint of ``step``."""
        if step == self.crash_in_save and self._first(f"crash-save-{step}"):
            _exit(f"fault drill: rank {self.rank} exits with {CRASH_EXIT_CODE} while saving step {step}")

    def _first(self, name: str) -> bool:
        """Mark drill ``name`` of this rank fired; False when an earlier start of this run fired it."""
        if self.marks is None:
            return True
        self.marks.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(self.marks / f"rank{self.rank}-{name}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True


def stall_drill() -> None:
    """Block forever, alive and runnable (not stopped): the other ranks wait in the next collective."""
    threading.Event().wait()


def _mine(rank: int, text: str | None) -> tuple[int, str] | None:
    """``RANK:STEP[:save]`` (checked by the launcher) as (STEP, phase) when it names this rank."""
    if not text:
        return None
    parts = text.split(":")
    return (int(parts[1]), parts[2] if len(parts) > 2 else "step") if int(parts[0]) == rank else None


def _exit(line: str) -> None:
    print(line, flush=True)
    os._exit(CRASH_EXIT_CODE)
