"""Run one of launchdeck's node modules on the job's hosts while the job runs (the reap, the stack dump):
this machine directly, another host through the plan's remote shell (ssh), every host at once."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from ..plan.model import LaunchPlan
from ..plan.transports.common import is_this_machine, remote_command


def reachable(plan: LaunchPlan, hosts: list[str]) -> list[str]:
    """The hosts this launcher can run a command on: this machine, or any where the plan has a remote shell."""
    return [host for host in hosts if plan.remote_shell or is_this_machine(host)]


def run_module(plan: LaunchPlan, host: str, module: str, args: list[str], timeout: float) -> str | None:
    """``python -m MODULE ARGS…`` on ``host`` with the nodes' interpreter; its stdout, or None when it did
    not finish in ``timeout`` seconds (an unreachable or frozen host)."""
    node = plan.nodes[0]
    argv = [node.interpreter, "-m", module, *args]
    if not is_this_machine(host):
        argv = [*plan.remote_shell, host, remote_command(node.cwd, {}, argv)]
    try:
        done = subprocess.run(argv, cwd=node.cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return done.stdout


def on_each(hosts: list[str], work: Callable[[str], object]) -> dict[str, object]:
    """``work(host)`` for every host in parallel; host -> what it returned."""
    if not hosts:
        return {}
    from concurrent.futures import ThreadPoolExecutor  # with logging, ~10 ms: only after a failure

    with ThreadPoolExecutor(max_workers=min(32, len(hosts))) as pool:
        return dict(zip(hosts, pool.map(work, hosts), strict=True))
