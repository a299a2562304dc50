"""``doctor``: can every host of a cluster run a launch? Preflight on every host, then a tiny all-reduce
through the chosen transport, run like any launch (with a run record), and one verdict."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import entrypoints
from ..errors import LaunchdeckError
from ..plan.prepare import Prepared, new_run_dir, prepare
from ..plan.request import LaunchRequest
from . import execute, preflight
from .api import CONSOLE_LOG, run
from .preflight import HostCheck


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
    if prepared.plan.cluster_check:
        return _cluster_doctor(prepared, allreduce)
    if not prepared.plan.remote_shell:
        raise LaunchdeckError("--launcher: doctor checks hosts over ssh: use ssh, pdsh, openmpi or horovodrun")
    found = preflight.check_hosts(prepared.plan, cpu=request.cpu)
    ready = all(c.ok for c in found)
    reduced = _allreduce(prepared) if ready and allreduce else None
    ok, line = verdict(found, reduced)
    return DoctorReport(found, reduced, ok, line)


def _cluster_doctor(prepared: Prepared, allreduce: bool) -> DoctorReport:
    """A cluster with a check of its own (Ray): its nodes and versions, then the all-reduce through it."""
    plan = prepared.plan
    with tempfile.TemporaryDirectory() as tmp:  # no run record yet: the nodes need not see this copy
        job = Path(tmp) / Path(plan.cluster_check[-1]).name
        job.write_text(plan.files[plan.cluster_check[-1]])
        started = time.monotonic()
        try:
            facts = preflight.check_cluster(plan, [*plan.cluster_check[:-1], str(job)])
        except LaunchdeckError as error:
            return DoctorReport([], None, False, f"doctor: the {plan.transport} cluster is not ready: {error}")
    found = [_node_check(node, facts["facts"], time.monotonic() - started) for node in facts["nodes"]]
    reduced = _allreduce(prepared) if allreduce else None
    ok, line = verdict(found, reduced)
    return DoctorReport(found, reduced, ok, line)


def _node_check(node: dict, facts: dict, seconds: float) -> HostCheck:
    """A cluster node as a row of the doctor's table (a node with no room for a worker has no versions)."""
    versions = facts.get(node["ip"], {}).get("versions", {})
    return HostCheck(node["ip"], int(node["cpu"]), seconds, {**versions, "gpus": int(node["gpu"])} if versions else {})


def _allreduce(prepared: Prepared) -> AllreduceCheck:
    """The all-reduce job, run like any launch (its run record included), its console kept in the record."""
    run_dir = Path(prepared.plan.run_dir)
    outcome = run(prepared, check_hosts=False, console=CONSOLE_LOG)
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
