"""``launchdeck show``: a strategy as resolved (extends merged, overrides applied), as YAML."""

from __future__ import annotations

import click

from ..spec.catalog import load_strategy, to_yaml
from .options import overrides_from, strategy_overrides


@click.command()
@click.argument("name")
@strategy_overrides
def show(name: str, sets: tuple[str, ...], micro_batch: int | None, grad_accum: int | None,
         precision: str | None) -> None:
    """Print strategy NAME after `extends` and overrides, as YAML.

    \b
    NAME is a catalog strategy or the path of your own YAML.
    Example:
      launchdeck show zero3 --set zero.stage3_prefetch_bucket_size=1e8
    """
    strategy = load_strategy(name, overrides_from(sets, micro_batch, grad_accum, precision))
    click.echo(to_yaml(strategy), nl=False)

