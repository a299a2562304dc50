"""``launchdeck doctor``: can every host run a launch? One table, a verdict, an exit code."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from ..plan.request import LaunchRequest
from .options import cluster_options

if TYPE_CHECKING:
    from ..run.preflight import HostCheck


@click.command()
@cluster_options
@click.option("--cpu", is_flag=True, envvar="LAUNCHDECK_CPU", help="CPU ranks: no GPU checks.")
@click.option("--nproc", type=click.IntRange(1), help="--launcher ray: workers of the all-reduce (default 2).")
@click.option("--no-allreduce", is_flag=True, help="Only the per-host checks (what `launch` runs itself).")
@click.option("--json", "as_json", is_flag=True, help="Every check as JSON.")
def doctor(cluster: dict, cpu: bool, nproc: int | None, no_allreduce: bool, as_json: bool) -> None:
    """Check every host of a hostfile (or every node of a Ray cluster) before a launch.

    \b
    Per host, over ssh with the interpreter and directory a launch would use: ssh reachable,
    the same Python / torch / deepspeed (/ horovod) versions as here, slots <= visible GPUs
    (unless --cpu), the rendezvous port free; then a tiny all-reduce across every host through
    the chosen launcher. Exit code 0: ready; 1: a check failed; 2: bad input.
    Examples:
      launchdeck doctor --hostfile hosts
      launchdeck doctor --hostfile hosts --cpu --launcher openmpi --network-interface eth1
      launchdeck doctor --launcher ray --ray-address head:6379 --cpu --nproc 4
    """
    from ..run import doctor as checks

    if not cluster["hostfile"] and cluster["launcher"] != "ray":
        raise click.UsageError("--hostfile is required (or --launcher ray [--ray-address HOST:PORT])")
    report = checks.doctor(LaunchRequest("ddp", cpu=cpu, nproc=nproc, **cluster), allreduce=not no_allreduce)
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "verdict": report.verdict,
                               "hosts": [asdict(c) | {"ok": c.ok} for c in report.hosts],
                               "allreduce": asdict(report.allreduce) if report.allreduce else None}, indent=2))
    else:
        click.echo(table(report.hosts), nl=False)
        if report.allreduce is not None:
            click.echo(f"all-reduce: {'ok' if report.allreduce.ok else 'FAILED'}: {report.allreduce.detail}")
        click.echo(report.verdict)
    sys.exit(0 if report.ok else 1)


COLUMNS = ("host", "ssh", "python", "torch", "deepspeed", "horovod", "gpus", "slots", "verdict")


def table(checks: list[HostCheck]) -> str:
    """One row per host: what its probe found, and its verdict."""
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
