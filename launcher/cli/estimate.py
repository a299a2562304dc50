"""``launchdeck estimate``: per-rank memory of one strategy, or of the whole catalog, for a model and cluster."""

from __future__ import annotations

import json

import click

from ..errors import LaunchdeckError
from ..estimate import MAX_MICRO_BATCH, Estimate, Workload, estimate
from ..estimate.units import human, parse_size
from ..render import Cluster, render
from ..spec import catalog
from ..spec.models import PRESETS, ModelShape, resolve
from .options import overrides_from

PARTS = ("params", "grads", "optimizer", "activations", "buffers", "temporaries", "peak")


@click.command()
@click.argument("name", required=False)
@click.option("--all", "every", is_flag=True, help="Every catalog strategy in one table, those that fit first.")
@click.option("--model", default="tiny", show_default=True, metavar="PRESET|CONFIG.JSON",
              help=f"A payload preset ({', '.join(PRESETS)}) or a Hugging Face config.json (or its folder).")
@click.option("--world-size", "-n", type=click.IntRange(min=1), default=8, show_default=True,
              envvar="LAUNCHDECK_WORLD_SIZE", help="Total ranks (GPUs).  [env: LAUNCHDECK_WORLD_SIZE]")
@click.option("--gpus-per-node", type=click.IntRange(min=1), envvar="LAUNCHDECK_GPUS_PER_NODE",
              help="Ranks per node (default: min(world size, 8)).  [env: LAUNCHDECK_GPUS_PER_NODE]")
@click.option("--gpu-memory", metavar="SIZE", help="Memory of one GPU (80GiB, 40GB…): the verdict and the "
              "largest micro batch that fits.")
@click.option("--micro-batch", type=click.IntRange(min=1), help="Override training.micro_batch.")
@click.option("--seq-len", type=click.IntRange(min=1), help="Tokens per sample (default: the model's, ≤ 4096).")
@click.option("--cpu", is_flag=True, help="For CPU ranks (launch --cpu): what a CPU run changes applies, and "
              "offloaded state counts in the rank's own memory.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a strategy knob (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (a list with --all).")
def estimate_command(name: str | None, every: bool, model: str, world_size: int, gpus_per_node: int | None,
                     gpu_memory: str | None, micro_batch: int | None, seq_len: int | None, cpu: bool,
                     sets: tuple[str, ...], as_json: bool) -> None:
    """Per-rank memory of strategy NAME training MODEL: parameters, gradients, optimizer states,
    activations, buffers, temporaries and the peak, in bytes (no torch, no GPU needed).

    \b
    Examples:
      launchdeck estimate zero3 --model 1b -n 64 --gpu-memory 80GiB
      launchdeck estimate --all --model path/to/config.json -n 8 --gpu-memory 40GB
      launchdeck estimate zero2 --model 125m -n 2 --cpu --json
    """
    if bool(name) == every:
        raise click.UsageError("give a strategy NAME or --all (not both)")
    shape = resolve(model)
    memory = parse_size(gpu_memory) if gpu_memory is not None else None
    names = catalog.names() if every else [name]
    cluster = Cluster(world_size, gpus_per_node, accelerator="cpu" if cpu else "gpu")
    results = []
    for strategy in names:
        try:
            results.append(_one(strategy, shape, cluster, memory, micro_batch, seq_len, cpu, sets))
        except LaunchdeckError as exc:
            if not every:
                raise
            click.echo(f"launchdeck estimate: {strategy} skipped: {exc}", err=True)
    if not results:
        raise LaunchdeckError(f"no catalog strategy can be estimated for {world_size} ranks with these settings")
    if every:
        results.sort(key=lambda e: (e.fits is False, e.per_rank.peak))
    if as_json:
        payload = [e.to_json() for e in results] if every else results[0].to_json()
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(_table(results, shape))


def _one(name: str, shape: ModelShape, cluster: Cluster, memory: int | None, micro_batch: int | None,
         seq_len: int | None, cpu: bool, sets: tuple[str, ...]) -> Estimate:
    overrides = overrides_from(sets, micro_batch, None, None)
    if cpu:  # what a CPU run changes, decided where launch decides it (imported only then: the plan layer)
        from ..plan.prepare import strategy_for

        strategy, _ = strategy_for(name, overrides, cpu)
    else:
        strategy = catalog.load_strategy(name, overrides)
    rendered = render(strategy, cluster)
    workload = Workload(shape, strategy.training.micro_batch, seq_len or shape.seq_len, cpu=cpu)
    return estimate(rendered, workload, memory)


def _table(results: list[Estimate], shape: ModelShape) -> str:
    first = results[0]
    w = first.workload
    count = f"{shape.params() / 1e6:,.1f} M" if shape.params() >= 10**6 else f"{shape.params():,}"
    ranks = f"{first.world_size} rank{'s' if first.world_size > 1 else ''}"
    lines = [f"{shape.name}: {count} parameters; {ranks} "
             f"({first.gpus_per_node} per node), sequence {w.seq_len}; per rank:"]
    header = ["strategy", "micro", *PARTS, "offload/node", "fits", "max micro"]
    rows = [header] + [_row(e) for e in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += ["  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in
                        enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]
    return "\n".join(lines)


def _row(e: Estimate) -> list[str]:
    b = e.per_rank
    offload = (b.offload_cpu + b.offload_nvme) * e.gpus_per_node
    verdict = "-" if e.fits is None else "yes" if e.fits else "NO"
    largest = "-" if e.gpu_memory is None else str(e.max_micro_batch or "none")
    largest = f">={largest}" if e.max_micro_batch == MAX_MICRO_BATCH else largest
    return [e.strategy, str(e.workload.micro_batch), *(human(getattr(b, part)) for part in PARTS),
            human(offload) if offload else "-", verdict, largest]

