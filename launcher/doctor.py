"""Preflight: can every host of a plan run it? One ssh per host, in parallel, plus a real all-reduce.

Per host (``python -m launcher.probe`` over the plan's own ssh, interpreter and directory):
ssh reachable, the same Python / torch / deepspeed (/ horovod) versions as here, slots ≤ visible GPUs
(unless on CPU), the rendezvous port free on the rendezvous host. ``launch`` runs these cheap checks
before it starts anything; ``launchdeck doctor`` adds a tiny all-reduce across every host through the
real transport and prints one table with a verdict.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import probe, record
from .errors import LaunchdeckError
from .plan import LaunchPlan, NodePlan
from .render import RenderedConfig

PROBE_TIMEOUT_S = 30.0
NO_DIRECTORY, NO_INTERPRETER = 97, 98  # the probe line's own exit codes, before Python starts


@dataclass
class HostCheck:
    host: str
    slots: int
    seconds: float = 0.0
    facts: dict = field(default_factory=dict)  # what the probe reported (empty: it never ran)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def probe_line(node: NodePlan, port: int | None) -> str:
    """The remote shell line: the plan's directory and interpreter, each checked before Python starts."""
    cwd, python = shlex.quote(node.cwd), shlex.quote(node.interpreter)
    args = ["-m", "launcher.probe", *([f"--port={port}"] if port else [])]
    return (f"cd {cwd} 2>/dev/null || {{ echo 'no directory {node.cwd}' >&2; exit {NO_DIRECTORY}; }}; "
            f"test -x {python} || {{ echo 'no interpreter {node.interpreter}' >&2; exit {NO_INTERPRETER}; }}; "
            f"exec {python} {shlex.join(args)}")


def run_probe(node: NodePlan, port: int | None, remote_shell: list[str]) -> HostCheck:
    check, started = HostCheck(node.host, len(node.ranks)), time.monotonic()
    argv = [*remote_shell, node.host, probe_line(node, port)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        check.problems.append(f"no answer within {PROBE_TIMEOUT_S:.0f} s")
        return check
    check.seconds = time.monotonic() - started
    last = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode == 255:
        check.problems.append(f"ssh failed: {last or 'exit code 255'}")
    elif done.returncode:
        check.problems.append(last or f"the probe exited with code {done.returncode}")
    else:
        check.facts = json.loads(done.stdout.strip().splitlines()[-1])
    return check


def judge(check: HostCheck, here: dict, *, cpu: bool, engine: str, port: int | None) -> None:
    """Compare a host's facts with this machine's; every difference that breaks a launch is a problem."""
    facts = check.facts
    packages = ["python", "torch", "deepspeed", *(["horovod"] if engine == "horovod" else [])]
    for name in packages:
        if facts.get(name) != here.get(name):
            check.problems.append(f"{name} {facts.get(name) or 'missing'} (here: {here.get(name) or 'missing'})")
    if not cpu and facts["gpus"] == 0:
        check.problems.append("no GPU visible (use --cpu for CPU ranks)")
    elif not cpu and check.slots > facts["gpus"]:
        check.problems.append(f"{check.slots} slots but {facts['gpus']} GPU(s) visible")
    if port and facts.get("port_free") is False:
        check.problems.append(f"rendezvous port {port} is in use")


def check_hosts(plan: LaunchPlan, *, cpu: bool) -> list[HostCheck]:
    """The cheap checks on every host of the plan, in parallel."""
    here = probe.facts()
    master = plan.nodes[0].host if plan.master_addr in ("127.0.0.1", plan.nodes[0].host) else plan.master_addr

    def one(node: NodePlan) -> HostCheck:
        port = plan.master_port if node.host == master else None
        check = run_probe(node, port, plan.remote_shell)
        if check.facts:
            judge(check, here, cpu=cpu, engine=plan.engine, port=port)
        return check

    with ThreadPoolExecutor(max_workers=min(64, len(plan.nodes))) as pool:
        return list(pool.map(one, plan.nodes))


def preflight(plan: LaunchPlan, *, cpu: bool) -> None:
    """Refuse to start when a host cannot run the plan; one line naming the first problem."""
    failed = [c for c in check_hosts(plan, cpu=cpu) if not c.ok]
    if failed:
        more = f" (and {len(failed) - 1} more host(s))" if len(failed) > 1 else ""
        raise LaunchdeckError(f"preflight: {failed[0].host}: {'; '.join(failed[0].problems)}{more}; "
                              "`launchdeck doctor` shows every check (--no-preflight skips them)")


@dataclass(frozen=True)
class AllreduceCheck:
    ok: bool
    detail: str  # one line: the sum and timings, or what failed
    run_dir: str


def allreduce(plan: LaunchPlan, rendered: RenderedConfig) -> AllreduceCheck:
    """The tiny all-reduce through the plan's own transport, with a run record like any launch."""
    from . import execute  # the process machinery: only when the doctor really runs a job

    run_dir = Path(plan.run_dir)
    record.create(run_dir)
    record.write_inputs(run_dir, rendered, plan)
    with open(run_dir / "logs" / "console.log", "w", encoding="utf-8") as console:
        outcome = execute.run(plan, console=console)
    record.write_outcome(run_dir, outcome)
    result_path = run_dir / "allreduce.json"
    if outcome.returncode or not result_path.is_file():
        first = execute.report(outcome).splitlines()[0].removeprefix("launchdeck: ")
        return AllreduceCheck(False, f"{first} (record: {run_dir})", str(run_dir))
    r = json.loads(result_path.read_text())
    detail = (f"{r['world_size']} ranks on {len(set(r['hosts']))} host(s), {r['backend']}: sum {r['sum']:g} "
              f"(expected {r['expected']:g}); joined in {r['join_s']:.2f} s, 4 MB all-reduce "
              f"{r['allreduce_4mb_ms']:.1f} ms, {outcome.elapsed_s:.1f} s in all")
    return AllreduceCheck(bool(r["ok"]), detail, str(run_dir))


COLUMNS = ("host", "ssh", "python", "torch", "deepspeed", "horovod", "gpus", "slots", "verdict")


def table(checks: list[HostCheck]) -> str:
    rows = [COLUMNS] + [_row(c) for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
                   for row in rows)


def _row(check: HostCheck) -> tuple[str, ...]:
    f = check.facts
    ssh = f"{check.seconds:.2f}s" if f else "-"
    cells = [f.get(name) or ("missing" if f else "-") for name in ("python", "torch", "deepspeed", "horovod")]
    verdict = "ok" if check.ok else "; ".join(check.problems)
    return (check.host, ssh, *cells, str(f["gpus"]) if f else "-", str(check.slots), verdict)


def verdict(checks: list[HostCheck], reduced: AllreduceCheck | None) -> tuple[bool, str]:
    failed = [c for c in checks if not c.ok]
    if failed:
        return False, f"doctor: {len(failed)} of {len(checks)} host(s) not ready: " + "; ".join(
            f"{c.host}: {c.problems[0]}" for c in failed)
    if reduced is not None and not reduced.ok:
        return False, f"doctor: every host answered, but the all-reduce failed: {reduced.detail}"
    tail = "" if reduced is None else " and all-reduce together"
    return True, f"doctor: ok: {len(checks)} host(s) ready{tail}"
