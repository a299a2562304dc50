"""``launchdeck doctor``: can every host run a launch? One table, a verdict, an exit code."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click

from .options import cluster_options


@click.command()
@cluster_options
@click.option("--cpu", is_flag=True, envvar="LAUNCHDECK_CPU", help="CPU ranks: no GPU checks.")
@click.option("--no-allreduce", is_flag=True, help="Only the per-host checks (what `launch` runs itself).")
@click.option("--json", "as_json", is_flag=True, help="Every check as JSON.")
def doctor(cluster: dict, cpu: bool, no_allreduce: bool, as_json: bool) -> None:
    """Check every host of a hostfile before a launch.

    \b
    Per host, over ssh with the interpreter and directory a launch would use: ssh reachable,
    the same Python / torch / deepspeed (/ horovod) versions as here, slots <= visible GPUs
    (unless --cpu), the rendezvous port free; then a tiny all-reduce across every host through
    the chosen launcher. Exit code 0: ready; 1: a check failed; 2: bad input.
    Examples:
      launchdeck doctor --hostfile hosts
      launchdeck doctor --hostfile hosts --cpu --launcher openmpi --network-interface eth1
    """
    from .. import doctor as checks
    from ..launch import LaunchRequest, prepare
    from ..record import new_run_dir

    if not cluster["hostfile"]:
        raise click.UsageError("--hostfile is required")
    request = LaunchRequest("ddp", cpu=cpu, script=("-m", "launcher.allreduce"),
                            run_dir=str(new_run_dir("runs", "doctor")), **cluster)
    prepared = prepare(request)
    if not prepared.plan.remote_shell:
        raise click.BadParameter("doctor checks hosts over ssh: use ssh, pdsh, openmpi or horovodrun",
                                 param_hint="--launcher")
    found = checks.check_hosts(prepared.plan, cpu=cpu)
    ready = all(c.ok for c in found)
    reduced = checks.allreduce(prepared.plan, prepared.rendered) if ready and not no_allreduce else None
    ok, line = checks.verdict(found, reduced)
    if as_json:
        click.echo(json.dumps({"ok": ok, "verdict": line, "hosts": [asdict(c) | {"ok": c.ok} for c in found],
                               "allreduce": asdict(reduced) if reduced else None}, indent=2))
    else:
        click.echo(checks.table(found), nl=False)
        if reduced is not None:
            click.echo(f"all-reduce: {'ok' if reduced.ok else 'FAILED'}: {reduced.detail}")
        click.echo(line)
    sys.exit(0 if ok else 1)
