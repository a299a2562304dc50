"""The run API: a launch request in, an outcome out. The CLI, doctor (:mod:`.doctor`), benchmarks and tests
all start jobs through these functions (like torch's ``elastic_launch(config)(entrypoint)``); click commands
only parse flags and print.

``launch`` = ``prepare`` (decide, render, plan: :mod:`launcher.plan.prepare`) + ``run`` (check what must hold
before anything starts, write the run record, execute, record the outcome).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .. import render
from ..node import extensions
from ..plan.model import LaunchPlan
from ..plan.prepare import Prepared, prepare
from ..plan.request import LaunchRequest
from . import execute, preflight, record, restarts
from .execute import Outcome


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def launch(request: LaunchRequest, *, check_hosts: bool = True, console: IO[str] | str | None = None,
           notify: Callable[[str], None] = _stderr, time_limit: float | None = None) -> Outcome:
    """Prepare and run ``request``; ``notify`` gets the notices (CPU adaptations) before anything starts."""
    prepared = prepare(request)
    while request.run_dir is None and not record.reserve(Path(prepared.plan.run_dir)):
        prepared = prepare(request)  # another launch took that name this very second: the next one is free
    for notice in prepared.notices:
        notify(notice)
    if not request.max_restarts:
        return run(prepared, check_hosts=check_hosts, console=console, notify=notify, time_limit=time_limit)
    began = time.monotonic()

    def attempt(plan: Prepared, number: int) -> Outcome:
        left = None if time_limit is None else max(0.0, time_limit - (time.monotonic() - began))  # for them all
        return run(plan, check_hosts=check_hosts, console=console, notify=notify, time_limit=left, attempt=number)

    return restarts.launch(request, prepared, attempt, notify, check_hosts)


def run(prepared: Prepared, *, check_hosts: bool = True, console: IO[str] | str | None = None,
        notify: Callable[[str], None] = _stderr, time_limit: float | None = None, attempt: int = 1) -> Outcome:
    """Refuse what cannot run (missing programs, a host that fails preflight, a config the engine's own
    parser rejects), then write the run record, execute the plan, and record the outcome. ``console``: where
    the job's output goes (default stdout; ``CONSOLE_LOG``: ``logs/console.log`` in the run record).
    ``time_limit``: seconds the job may run before it is stopped everywhere as "timed out". ``attempt``: a
    restart (from 2) continues the record its first attempt made (:mod:`.restarts`)."""
    plan, run_dir = prepared.plan, Path(prepared.plan.run_dir)
    preflight.check_runnable(plan)  # the cheap check first: what is missing here
    if attempt == 1:
        record.create(run_dir)  # refuses a directory that holds anything: what is below is ours alone
    # a run refused before it starts leaves no record behind (a restart keeps the attempts before it)
    with record.unless_started(run_dir) if attempt == 1 else contextlib.nullcontext():
        record.write_inputs(plan, prepared.rendered)  # each host must see them: preflight checks it (ssh)
        if check_hosts and preflight.needs_preflight(plan):
            preflight.preflight(plan, cpu=prepared.rendered.cluster.accelerator == "cpu")
        render.check(prepared.rendered)
    _sweep_build_locks(plan, notify)
    started = time.time()
    with record.described(run_dir, prepared.rendered, plan, warn=notify), _console(run_dir, console) as out:
        outcome = execute.run(plan, console=out, time_limit=time_limit)
    if outcome.returncode:  # its ranks are gone: a build they were in the middle of can never finish
        _sweep_build_locks(plan, notify, since=started)
    for problem in record.finish(run_dir, outcome, failed=bool(outcome.returncode)):
        notify(problem)
    return outcome


CONSOLE_LOG = "logs/console.log"


def _sweep_build_locks(plan: LaunchPlan, notify: Callable[[str], None], since: float | None = None) -> None:
    """Locks left by a rank killed while building a C++ op make every later job wait forever: remove the old
    ones before a job, and after a failed job the ones it made."""
    root = plan.nodes[0].env.get(extensions.ENV) if plan.nodes else None
    for lock in extensions.sweep(root, since=since) if root else []:
        notify(f"launchdeck: notice: removed {lock}, left by a build that was killed")


@contextlib.contextmanager
def _console(run_dir: Path, console: IO[str] | str | None) -> Iterator[IO[str]]:
    if not isinstance(console, str):
        yield console or sys.stdout
        return
    with open(run_dir / console, "w", encoding="utf-8") as log:
        yield log
