"""Options shared by commands that take a strategy. Environment: LAUNCHDECK_<OPTION>.

Precedence, the same everywhere: command line > environment > strategy YAML > defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def strategy_overrides(func: Callable[..., Any]) -> Callable[..., Any]:
    """--micro-batch, --grad-accum, --precision and --set, in that order of application (last wins)."""
    options = [
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override a strategy knob, e.g. --set zero.stage=2 (repeatable)."),
        click.option("--precision", type=click.Choice(["bf16", "fp16", "fp32"]), envvar="LAUNCHDECK_PRECISION",
                     help="Override training.precision.  [env: LAUNCHDECK_PRECISION]"),
        click.option("--grad-accum", type=click.IntRange(min=1), envvar="LAUNCHDECK_GRAD_ACCUM",
                     help="Override training.grad_accum.  [env: LAUNCHDECK_GRAD_ACCUM]"),
        click.option("--micro-batch", type=click.IntRange(min=1), envvar="LAUNCHDECK_MICRO_BATCH",
                     help="Override training.micro_batch.  [env: LAUNCHDECK_MICRO_BATCH]"),
    ]
    for option in options:
        func = option(func)
    return func


def overrides_from(sets: tuple[str, ...], micro_batch: int | None, grad_accum: int | None,
                   precision: str | None) -> list[str]:
    """The dedicated flags as ``--set`` entries, applied after the explicit ``--set``s."""
    result = list(sets)
    if micro_batch is not None:
        result.append(f"training.micro_batch={micro_batch}")
    if grad_accum is not None:
        result += [f"training.grad_accum={grad_accum}", "training.global_batch=null"]
    if precision is not None:
        result.append(f"training.precision={precision}")
    return result
