"""Preflight: can this machine and every host of a plan run it? One ssh per host, in parallel.

Per host (``python -m launcher.node.probe`` over the plan's own ssh, interpreter and directory):
ssh reachable, the same Python / torch / deepspeed (/ horovod) versions as here, slots ≤ visible GPUs
(unless on CPU), the rendezvous port free on the rendezvous host. ``launch`` runs these cheap checks
before it starts anything; ``launchdeck doctor`` (:mod:`launcher.run.doctor`) adds a tiny all-reduce
across every host through the real transport.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field

from .. import entrypoints
from ..errors import LaunchdeckError
from ..node import probe
from ..plan.model import LaunchPlan, NodePlan
from ..plan.transports.common import is_this_machine
from ..spec import engines

PROBE_TIMEOUT_S = 30.0
CLUSTER_CHECK_TIMEOUT_S = 60.0  # the check keeps its own deadlines; this is for a check that hangs
NO_DIRECTORY, NO_INTERPRETER, NOT_SHARED = 97, 98, 99  # the probe line's own exit codes, before Python starts


@dataclass
class HostCheck:
    """What preflight found on one host: the probe's facts (empty: it never ran) and every problem."""

    host: str
    slots: int
    seconds: float = 0.0
    facts: dict = field(default_factory=dict)  # what the probe reported (empty: it never ran)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def probe_line(node: NodePlan, port: int | None, shared: str | None = None) -> str:
    """The remote shell line: the plan's directory and interpreter, each checked before Python starts, and
    ``shared`` (a file of the run record, written here) readable there: the run directory is on a filesystem
    the host shares."""
    cwd, python = shlex.quote(node.cwd), shlex.quote(node.interpreter)
    args = ["-m", entrypoints.PROBE, *([f"--port={port}"] if port else [])]
    no_python = shlex.quote(f"no interpreter {node.interpreter}")
    line = (f"cd {cwd} 2>/dev/null || {{ echo {shlex.quote(f'no directory {node.cwd}')} >&2; exit {NO_DIRECTORY}; }}; "
            f"test -x {python} || {{ echo {no_python} >&2; exit {NO_INTERPRETER}; }}; ")
    if shared:
        missing = f"no {shared}: the run directory is not on a filesystem this host shares (--run-dir)"
        line += f"test -r {shlex.quote(shared)} || {{ echo {shlex.quote(missing)} >&2; exit {NOT_SHARED}; }}; "
    return line + f"exec {python} {shlex.join(args)}"


def run_probe(node: NodePlan, port: int | None, remote_shell: list[str], shared: str | None = None) -> HostCheck:
    check, started = HostCheck(node.host, len(node.ranks)), time.monotonic()
    argv = [*remote_shell, node.host, probe_line(node, port, shared)]
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
    packages = ["python", "torch", "deepspeed", *engines.get(engine).host_packages]
    for name in packages:
        if facts.get(name) != here.get(name):
            check.problems.append(f"{name} {facts.get(name) or 'missing'} (here: {here.get(name) or 'missing'})")
    if not cpu and facts["gpus"] == 0:
        check.problems.append("no GPU visible (use --cpu for CPU ranks)")
    elif not cpu and check.slots > facts["gpus"]:
        check.problems.append(f"{check.slots} slots but {facts['gpus']} GPU(s) visible")
    if port and facts.get("port_free") is False:
        check.problems.append(f"rendezvous port {port} is in use")


def check_hosts(plan: LaunchPlan, *, cpu: bool, shared: str | None = None) -> list[HostCheck]:
    """The cheap checks on every host of the plan, in parallel (``shared``: a file each must see)."""
    here = probe.facts()

    def one(node: NodePlan) -> HostCheck:
        port = plan.master_port if node.host == plan.rendezvous_host else None
        check = run_probe(node, port, plan.remote_shell, shared)
        if check.facts:
            judge(check, here, cpu=cpu, engine=plan.engine, port=port)
        return check

    from concurrent.futures import ThreadPoolExecutor  # with logging, ~10 ms: only for plans across hosts

    with ThreadPoolExecutor(max_workers=min(64, len(plan.nodes))) as pool:
        return list(pool.map(one, plan.nodes))


def check_runnable(plan: LaunchPlan) -> None:
    """What this machine lacks to run the plan (the engine's build, a transport's program): say so before
    anything starts."""
    missing = engines.get(plan.engine).missing_here()
    if missing:
        raise LaunchdeckError(missing)
    if not plan.commands:
        raise LaunchdeckError(f"--launcher {plan.transport} only prints the line each node runs; add --dry-run "
                              "(or choose ssh, pdsh, openmpi, slurm or horovodrun to start them from here)")
    for command in plan.commands:
        program = next(arg for arg in command.argv if arg != "env" and "=" not in arg)  # past `env NAME=VALUE …`
        if not shutil.which(program):
            raise LaunchdeckError(f"--launcher {plan.transport} needs {program!r}, which is not installed here "
                                  "(or not on PATH)")


def needs_preflight(plan: LaunchPlan) -> bool:
    """Plans with a cluster check of their own (Ray), and plans that reach other hosts over ssh (Slurm checks its
    own nodes; one machine needs no ssh)."""
    if plan.cluster_check:
        return True
    return bool(plan.remote_shell) and not all(is_this_machine(node.host) for node in plan.nodes)


def check_cluster(plan: LaunchPlan, argv: list[str] | None = None) -> dict:
    """The transport's own check of its cluster (:mod:`launcher.raycluster.check`; ``argv``: another form of
    it): its facts, or its one line as the error."""
    try:
        done = subprocess.run(argv or plan.cluster_check, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=CLUSTER_CHECK_TIMEOUT_S, cwd=plan.nodes[0].cwd)
    except subprocess.TimeoutExpired:
        raise LaunchdeckError(f"--launcher {plan.transport}: the cluster check gave no answer within "
                              f"{CLUSTER_CHECK_TIMEOUT_S:g} s") from None
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"the cluster check exited with code {done.returncode}"])[-1]
        raise LaunchdeckError(last.removeprefix("launchdeck: "))
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise LaunchdeckError(f"--launcher {plan.transport}: the cluster check said nothing")
    return json.loads(lines[-1])


def preflight(plan: LaunchPlan, *, cpu: bool) -> None:
    """Refuse to start when a host cannot run the plan; one line naming the first problem. The run record's
    inputs are written by now: every host must read the config where the plan says it is."""
    if plan.cluster_check:
        check_cluster(plan)
        return
    failed = [c for c in check_hosts(plan, cpu=cpu, shared=plan.config_path) if not c.ok]
    if failed:
        more = f" (and {len(failed) - 1} more host(s))" if len(failed) > 1 else ""
        raise LaunchdeckError(f"preflight: {failed[0].host}: {'; '.join(failed[0].problems)}{more}; "
                              "`launchdeck doctor` shows every check (--no-preflight skips them)")
