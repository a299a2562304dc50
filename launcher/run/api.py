"""The run API: a launch request in, an outcome out. The CLI, doctor, benchmarks and tests all start jobs
through these functions (like torch's ``elastic_launch(config)(entrypoint)``); click commands only parse
flags and print.

``launch`` = ``prepare`` (decide, render, plan: :mod:`launcher.plan.prepare`) + ``run`` (check what must hold
before anything starts, write the run record, execute, record the outcome).
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .. import entrypoints, render
from ..errors import LaunchdeckError
from ..plan.prepare import Prepared, new_run_dir, prepare
from ..plan.request import LaunchRequest
from . import execute, preflight, record
from .execute import Outcome
from .preflight import HostCheck


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def launch(request: LaunchRequest, *, check_hosts: bool = True, console: IO[str] | None = None,
           notify: Callable[[str], None] = _stderr) -> Outcome:
    """Prepare and run ``request``; ``notify`` gets the notices (CPU adaptations) before anything starts."""
    prepared = prepare(request)
    for notice in prepared.notices:
        notify(notice)
    return run(prepared, check_hosts=check_hosts, console=console)


def run(prepared: Prepared, *, check_hosts: bool = True, console: IO[str] | None = None) -> Outcome:
    """Refuse what cannot run (missing programs, a host that fails preflight, a config the engine's own
    parser rejects), then write the run record, execute the plan, and record the outcome."""
    plan = prepared.plan
    preflight.check_runnable(plan)  # the cheap checks first: what is missing here, then each host (ssh)
    if check_hosts and preflight.needs_preflight(plan):
        preflight.preflight(plan, cpu=prepared.rendered.cluster.accelerator == "cpu")
    render.check(prepared.rendered)
    run_dir = Path(plan.run_dir)
    record.create(run_dir)
    record.write_inputs(plan, prepared.rendered)
    with record.described(run_dir, prepared.rendered, plan):
        outcome = execute.run(plan, console=console or sys.stdout)
    record.write_outcome(run_dir, outcome)
    return outcome


@dataclass(frozen=True)
class AllreduceCheck:
    """The doctor's all-reduce across every host: whether the sum came out right, in one line."""

    ok: bool
    detail: str  # the sum and timings, or what failed
    run_dir: str


@dataclass(frozen=True)
class DoctorReport:
    """Every host's checks, the all-reduce (None when skipped or when a host was not ready), a verdict."""

    hosts: list[HostCheck]
    allreduce: AllreduceCheck | None
    ok: bool
    verdict: str


def doctor(request: LaunchRequest, *, allreduce: bool = True) -> DoctorReport:
    """Preflight every host of ``request``'s cluster, then a tiny all-reduce through its transport."""
    request = dataclasses.replace(request, strategy="ddp", script=("-m", entrypoints.ALLREDUCE),
                                  run_dir=request.run_dir or str(new_run_dir(request.runs_root, "doctor")))
    prepared = prepare(request)
    if not prepared.plan.remote_shell:
        raise LaunchdeckError("--launcher: doctor checks hosts over ssh: use ssh, pdsh, openmpi or horovodrun")
    found = preflight.check_hosts(prepared.plan, cpu=request.cpu)
    ready = all(c.ok for c in found)
    reduced = _allreduce(prepared) if ready and allreduce else None
    ok, line = verdict(found, reduced)
    return DoctorReport(found, reduced, ok, line)


def _allreduce(prepared: Prepared) -> AllreduceCheck:
    """The all-reduce job, run like any launch (its run record included), its console kept in the record."""
    run_dir, console = Path(prepared.plan.run_dir), io.StringIO()
    outcome = run(prepared, check_hosts=False, console=console)
    (run_dir / "logs" / "console.log").write_text(console.getvalue(), encoding="utf-8")
    result_path = run_dir / "allreduce.json"
    if outcome.returncode or not result_path.is_file():
        first = execute.report(outcome).splitlines()[0].removeprefix("launchdeck: ")
        return AllreduceCheck(False, f"{first} (record: {run_dir})", str(run_dir))
    r = json.loads(result_path.read_text())
    detail = (f"{r['world_size']} ranks on {len(set(r['hosts']))} host(s), {r['backend']}: sum {r['sum']:g} "
              f"(expected {r['expected']:g}); joined in {r['join_s']:.2f} s, 4 MB all-reduce "
              f"{r['allreduce_4mb_ms']:.1f} ms, {outcome.elapsed_s:.1f} s in all")
    return AllreduceCheck(bool(r["ok"]), detail, str(run_dir))


def verdict(checks: list[HostCheck], reduced: AllreduceCheck | None) -> tuple[bool, str]:
    """Ready or not, in one line naming every host that is not."""
    failed = [c for c in checks if not c.ok]
    if failed:
        return False, f"doctor: {len(failed)} of {len(checks)} host(s) not ready: " + "; ".join(
            f"{c.host}: {c.problems[0]}" for c in failed)
    if reduced is not None and not reduced.ok:
        return False, f"doctor: every host answered, but the all-reduce failed: {reduced.detail}"
    tail = "" if reduced is None else " and all-reduce together"
    return True, f"doctor: ok: {len(checks)} host(s) ready{tail}"
