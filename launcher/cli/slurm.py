"""``launchdeck slurm``: a complete sbatch script that launches a strategy in its allocation."""

from __future__ import annotations

import re

import click

from ..plan.transports.slurm import batch_script
from ..spec.catalog import load_strategy

_TIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@click.command()
@click.argument("name")
@click.option("--nodes", type=click.IntRange(min=1), required=True, help="Nodes to allocate.")
@click.option("--gpus-per-node", type=click.IntRange(min=1), default=8, show_default=True,
              help="GPUs (ranks) per node.")
@click.option("--time", "time_limit", default="01:00:00", show_default=True, help="Wall-clock limit ([D-]HH:MM:SS).")
@click.option("--partition", help="Slurm partition.")
@click.option("--account", help="Slurm account.")
@click.option("--cpu", is_flag=True, help="CPU ranks (gloo), no GPUs requested.")
@click.argument("launch_args", nargs=-1, type=click.UNPROCESSED)
def slurm(name: str, nodes: int, gpus_per_node: int, time_limit: str, partition: str | None, account: str | None,
          cpu: bool, launch_args: tuple[str, ...]) -> None:
    """Print an sbatch script that trains NAME on NODES nodes (extra args go to `launchdeck launch`).

    \b
    Example:
      launchdeck slurm zero3 --nodes 4 --gpus-per-node 8 --time 02:00:00 -- --steps 500 > job.sbatch
      sbatch job.sbatch
    """
    strategy = load_strategy(name)  # fail now, not in the queue
    if not _TIME.match(time_limit):
        raise click.BadParameter(f"{time_limit!r} is not [D-]HH:MM:SS", param_hint="--time")
    for flag, value in (("--partition", partition), ("--account", account)):
        if value is not None and not _SLURM_NAME.match(value):
            raise click.BadParameter(f"{value!r} has characters Slurm names do not", param_hint=flag)
    args = [name, "--nproc", str(gpus_per_node), *(["--cpu"] if cpu else []), *launch_args]
    click.echo(batch_script(job_name=f"launchdeck-{strategy.name}", nodes=nodes, gpus_per_node=gpus_per_node,
                            time=time_limit, partition=partition, account=account, launch_args=args), nl=False)
