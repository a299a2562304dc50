"""``launchdeck hostfile …``: write, convert and check hostfiles for DeepSpeed, Horovod and MPI."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..cluster import hosts, schedulers
from ..errors import LaunchdeckError
from ..files import write_atomic

FORMAT = click.option("--format", "fmt", type=click.Choice(hosts.FORMATS), default="deepspeed", show_default=True,
                      help="deepspeed and mpi: 'host slots=N'; horovod: 'host:N'.")
OUTPUT = click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout.")


def _emit(found: list[hosts.Host], fmt: str, output: str | None) -> None:
    text = hosts.format_hosts(found, fmt)
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)


@click.group()
def hostfile() -> None:
    """Write, convert and check hostfiles.

    \b
    Examples:
      launchdeck hostfile create node1:8 node2:8 -o hostfile
      launchdeck hostfile from-slurm 'gpu[01-16]' --slots 8 --format horovod
      launchdeck hostfile check hostfile --exclude node2:0,1 --json
    """


@hostfile.command()
@click.argument("specs", nargs=-1, required=True, metavar="HOST[:SLOTS]…")
@click.option("--slots", type=click.IntRange(min=1), default=1, show_default=True, help="Slots for HOSTs without :N.")
@FORMAT
@OUTPUT
def create(specs: tuple[str, ...], slots: int, fmt: str, output: str | None) -> None:
    """A hostfile from HOST[:SLOTS] arguments (example: launchdeck hostfile create a:8 b:8)."""
    _emit(hosts.from_specs(specs, slots), fmt, output)


@hostfile.command("from-slurm")
@click.argument("nodelist", required=False)
@click.option("--slots", type=click.IntRange(min=1), help="Slots per node (default: from $SLURM_TASKS_PER_NODE).")
@FORMAT
@OUTPUT
def from_slurm(nodelist: str | None, slots: int | None, fmt: str, output: str | None) -> None:
    """From a SLURM node list (default $SLURM_JOB_NODELIST), e.g. from-slurm 'gpu[01-04]' --slots 8."""
    _emit(schedulers.from_slurm(nodelist, slots), fmt, output)


@hostfile.command("from-pbs")
@click.argument("nodefile", required=False)
@FORMAT
@OUTPUT
def from_pbs(nodefile: str | None, fmt: str, output: str | None) -> None:
    """From a PBS node file (default $PBS_NODEFILE), e.g. from-pbs --format mpi."""
    _emit(schedulers.from_pbs(nodefile), fmt, output)


@hostfile.command("from-lsf")
@FORMAT
@OUTPUT
def from_lsf(fmt: str, output: str | None) -> None:
    """From $LSB_MCPU_HOSTS or $LSB_HOSTS, e.g. from-lsf -o hostfile."""
    _emit(schedulers.from_lsf(), fmt, output)


@hostfile.command()
@click.argument("path")
@click.option("--to", "fmt", type=click.Choice(hosts.FORMATS), required=True, help="The format to write.")
@OUTPUT
def convert(path: str, fmt: str, output: str | None) -> None:
    """Rewrite hostfile PATH in another format, e.g. convert hostfile --to horovod."""
    _emit(hosts.read(path), fmt, output)


@hostfile.command()
@click.argument("path")
@click.option("--include", help="DeepSpeed syntax: host[:slot,slot]@host… (only these).")
@click.option("--exclude", help="DeepSpeed syntax: host[:slot,slot]@host… (all but these).")
@click.option("--since", metavar="RUN_DIR", type=click.Path(exists=True, file_okay=False),
              help="Also say what changed since that run's last attempt (its plan.json): hosts added, gone, resized "
                   "— what a --min-nodes restart would rejoin or leave out.")
@click.option("--json", "as_json", is_flag=True, help='Print only {"hosts": {name: [slot, …]}, "world_size": N} '
              '(and "since").')
def check(path: str, include: str | None, exclude: str | None, since: str | None, as_json: bool) -> None:
    """Parse and validate PATH, apply filters, print hosts, slots and world size (--since RUN_DIR: and what
    changed since that run's last attempt).

    Example: launchdeck hostfile check hostfile --include node1@node3:0,1
    """
    active = hosts.apply_filters(hosts.resources(hosts.read(path)), include, exclude)
    size = hosts.world_size(active)
    changed = hosts.changes(_run_hosts(since), {h: len(s) for h, s in active.items()}) if since else None
    if as_json:
        click.echo(json.dumps({"hosts": active, "world_size": size, **({"since": changed} if since else {})}))
        return
    width = max(len(h) for h in active)
    for name, slots in active.items():
        click.echo(f"{name:<{width}}  slots {','.join(map(str, slots))}")
    click.echo(f"{len(active)} host(s), world size {size}")
    if changed is not None:
        resized = [f"{h} {old}→{new}" for h, (old, new) in changed["resized"].items()]
        click.echo(f"since {since}: added {', '.join(changed['added']) or 'none'}; gone "
                   f"{', '.join(changed['gone']) or 'none'}; slots changed {', '.join(resized) or 'none'}")


def _run_hosts(run_dir: str) -> dict[str, int]:
    """host → ranks in a run's plan.json (its last attempt)."""
    path = Path(run_dir) / "plan.json"
    try:
        nodes = json.loads(path.read_text())["nodes"]
        return {node["host"]: len(node["ranks"]) for node in nodes}
    except (OSError, ValueError, KeyError, TypeError):
        raise LaunchdeckError(f"--since {run_dir}: no readable plan.json there (a launchdeck run directory?)") from None
