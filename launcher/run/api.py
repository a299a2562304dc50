"""The run API: a launch request in, an outcome out. The CLI, doctor (:mod:`.doctor`), benchmarks and tests
all start jobs through these functions (like torch's ``elastic_launch(config)(entrypoint)``); click commands
only parse flags and print.

``launch`` = ``prepare`` (decide, render, plan: :mod:`launcher.plan.prepare`) + ``run`` (check what must hold
before anything starts, write the run record, execute, record the outcome).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .. import render
from ..plan.prepare import Prepared, prepare
from ..plan.request import LaunchRequest
from . import execute, preflight, record
from .execute import Outcome


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def launch(request: LaunchRequest, *, check_hosts: bool = True, console: IO[str] | None = None,
           notify: Callable[[str], None] = _stderr) -> Outcome:
    """Prepare and run ``request``; ``notify`` gets the notices (CPU adaptations) before anything starts."""
    prepared = prepare(request)
    for notice in prepared.notices:
        notify(notice)
    return run(prepared, check_hosts=check_hosts, console=console, notify=notify)


def run(prepared: Prepared, *, check_hosts: bool = True, console: IO[str] | str | None = None,
        notify: Callable[[str], None] = _stderr) -> Outcome:
    """Refuse what cannot run (missing programs, a host that fails preflight, a config the engine's own
    parser rejects), then write the run record, execute the plan, and record the outcome. ``console``: where
    the job's output goes (default stdout; ``CONSOLE_LOG``: ``logs/console.log`` in the run record)."""
    plan = prepared.plan
    preflight.check_runnable(plan)  # the cheap checks first: what is missing here, then each host (ssh)
    if check_hosts and preflight.needs_preflight(plan):
        preflight.preflight(plan, cpu=prepared.rendered.cluster.accelerator == "cpu")
    render.check(prepared.rendered)
    run_dir = Path(plan.run_dir)
    record.create(run_dir)
    record.write_inputs(plan, prepared.rendered)
    with record.described(run_dir, prepared.rendered, plan, warn=notify), _console(run_dir, console) as out:
        outcome = execute.run(plan, console=out)
    record.write_outcome(run_dir, outcome)
    return outcome


CONSOLE_LOG = "logs/console.log"


@contextlib.contextmanager
def _console(run_dir: Path, console: IO[str] | str | None) -> Iterator[IO[str]]:
    if not isinstance(console, str):
        yield console or sys.stdout
        return
    with open(run_dir / console, "w", encoding="utf-8") as log:
        yield log
