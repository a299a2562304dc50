"""Options shared by commands that take a strategy. Environment: LAUNCHDECK_<OPTION>.

Precedence, the same everywhere: command line > environment > strategy YAML > defaults.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ..plan.transports import LAUNCHERS


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


def cluster_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Hosts, transport, rendezvous and ssh: the options of ``launch`` and ``doctor``, handed to the command
    as one ``cluster`` dict of ``LaunchRequest`` fields."""
    options = [
        click.option("--hostfile", type=click.Path(dir_okay=False), envvar="LAUNCHDECK_HOSTFILE",
                     help="Hosts and slots ('host slots=N' or 'host:N'); a missing file is an error."),
        click.option("--include", help="Only these hosts/slots: host[:slot,slot]@host… (DeepSpeed syntax)."),
        click.option("--exclude", help="All but these hosts/slots: host[:slot,slot]@host…"),
        click.option("--launcher", type=click.Choice(LAUNCHERS), envvar="LAUNCHDECK_LAUNCHER",
                     help="How ranks start: local (default), ssh (default with --hostfile), pdsh, openmpi, slurm, "
                          "horovodrun, torchrun (print per-node commands), ray (an existing Ray cluster)."),
        click.option("--ray-address", envvar="LAUNCHDECK_RAY_ADDRESS",
                     help="--launcher ray: the head's HOST:PORT, or 'auto' (default: the cluster this machine is a "
                          "node of). --nproc sets the workers; one GPU each, or one CPU with --cpu."),
        click.option("--master-addr", help="Rendezvous host (default: the first host)."),
        click.option("--master-port", type=click.IntRange(1, 65535), help="Rendezvous port (default: a free one)."),
        click.option("--ssh-port", type=click.IntRange(1, 65535), help="ssh port on the hosts."),
        click.option("--ssh-key", type=click.Path(dir_okay=False), help="ssh identity file."),
        click.option("--network-interface", help="NIC for rank traffic (e.g. ib0): gloo, NCCL, MPI and Horovod use "
                                                 "it; no default is assumed."),
        click.option("--env", multiple=True, metavar="NAME=VALUE",
                     help="Extra env for every rank on every host (repeatable; values are passed verbatim)."),
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cluster = {name: kwargs.pop(name) for name in CLUSTER_FIELDS}
        return func(*args, cluster=cluster, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


CLUSTER_FIELDS = ("hostfile", "include", "exclude", "launcher", "ray_address", "master_addr", "master_port",
                  "ssh_port", "ssh_key", "network_interface", "env")
