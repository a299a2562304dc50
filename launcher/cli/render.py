"""``launchdeck render``: a strategy rendered for a world size, as JSON."""

from __future__ import annotations

import json

import click

from ..files import write_atomic
from ..render import Cluster
from ..render import render as render_config
from ..spec.catalog import load_strategy
from .options import overrides_from, strategy_overrides


@click.command()
@click.argument("name")
@click.option("--world-size", "-n", type=click.IntRange(min=1), required=True, envvar="LAUNCHDECK_WORLD_SIZE",
              help="Total ranks (GPUs) the config is for.  [env: LAUNCHDECK_WORLD_SIZE]")
@click.option("--gpus-per-node", type=click.IntRange(min=1), envvar="LAUNCHDECK_GPUS_PER_NODE",
              help="Ranks per node (default: min(world size, 8)); sizes ZeRO++ hpZ.  "
                   "[env: LAUNCHDECK_GPUS_PER_NODE]")
@strategy_overrides
@click.option("--hf", is_flag=True, help="The Hugging Face Trainer flavour: \"auto\" where the Trainer fills in.")
@click.option("--check", is_flag=True, help="Also run DeepSpeed's own config parser at this world size (slow).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the JSON here instead of stdout.")
def render(name: str, world_size: int, gpus_per_node: int | None, sets: tuple[str, ...],
           micro_batch: int | None, grad_accum: int | None, precision: str | None, hf: bool, check: bool,
           output: str | None) -> None:
    """Render strategy NAME into the engine's config for WORLD_SIZE ranks.

    \b
    NAME is a catalog strategy or the path of your own YAML.
    DeepSpeed strategies give DeepSpeed JSON with batch sizes solved;
    horovod gives horovodrun flags + HOROVOD_* env; ddp gives DDP settings.
    Examples:
      launchdeck render zero3 --world-size 64 --gpus-per-node 8 -o ds_config.json
      launchdeck render zero2 -n 8 --micro-batch 2 --set training.global_batch=256 --check
    """
    strategy = load_strategy(name, overrides_from(sets, micro_batch, grad_accum, precision))
    rendered = render_config(strategy, Cluster(world_size, gpus_per_node), hf=hf)
    if check:
        from ..render import check as check_config

        check_config(rendered)
    text = json.dumps(rendered.config, indent=2) + "\n"
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)
