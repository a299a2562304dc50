"""``launchdeck k8s``: Kubernetes manifests (ConfigMap + PyTorchJob / MPIJob / TrainJob) for a strategy."""

from __future__ import annotations

import click
import yaml

from ..files import write_atomic
from ..plan.kubernetes import KINDS, K8sRequest, manifests
from ..spec.models import PRESETS
from .options import overrides_from, strategy_overrides


class _Dumper(yaml.SafeDumper):
    """Plain YAML for kubectl: no anchors for repeated lists, multi-line strings (the config) as blocks."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def _elastic(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    low, sep, high = value.partition(":")
    if not (sep and low.isascii() and low.isdigit() and high.isascii() and high.isdigit()):
        raise click.BadParameter(f"{value!r}: expected MIN:MAX nodes, e.g. 2:8")
    return int(low), int(high)


@click.command()
@click.argument("name")
@click.argument("script", nargs=-1, type=click.UNPROCESSED)
@click.option("--nodes", type=click.IntRange(min=1), required=True, help="Pods (nodes) to run on.")
@click.option("--gpus-per-node", type=click.IntRange(min=1), default=8, show_default=True,
              help="GPUs (ranks) per pod.")
@click.option("--image", required=True, help="The container image (launchdeck and its engines installed).")
@click.option("--kind", type=click.Choice(KINDS), help="The job kind (default: the engine's first: pytorchjob, "
              "or mpijob for horovod).")
@click.option("--elastic", metavar="MIN:MAX", callback=_elastic, help="PyTorchJob: elastic node count "
              "(elasticPolicy, c10d rendezvous).")
@click.option("--namespace", default="default", show_default=True, help="Namespace of every object.")
@click.option("--job-name", "name_", help="The job's name (default: launchdeck-<strategy>).")
@click.option("--steps", type=click.IntRange(min=1), help="Override training.steps.")
@click.option("--model", type=click.Choice(list(PRESETS)), default="tiny", show_default=True,
              help="Payload model preset.")
@strategy_overrides
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
def k8s(name: str, script: tuple[str, ...], sets: tuple[str, ...], micro_batch: int | None, grad_accum: int | None,
        precision: str | None, output: str | None, name_: str | None, **fields) -> None:
    """Write Kubernetes manifests that train strategy NAME with the Kubeflow operators.

    \b
    A ConfigMap with the rendered config (mounted in every pod), then the job: a PyTorchJob (one
    torchrun per pod, the line `launch --launcher torchrun --dry-run` prints), an MPIJob (mpirun from a
    launcher pod; horovod and DeepSpeed over MPI) or a TrainJob (Kubeflow Trainer 2 runtimes).
    With `-- SCRIPT ARGS…` the pods run your script instead of the payload.
    Examples:
      launchdeck k8s zero3 --nodes 4 --gpus-per-node 8 --image registry/team/train:1.0 -o job.yaml
      launchdeck k8s horovod --nodes 2 --image registry/team/train:1.0
      launchdeck k8s ddp --nodes 4 --elastic 2:8 --image registry/team/train:1.0
    """
    overrides = tuple(overrides_from(sets, micro_batch, grad_accum, precision))
    request = K8sRequest(strategy=name, overrides=overrides, script=script, name=name_, **fields)
    text = yaml.dump_all(manifests(request), Dumper=_Dumper, sort_keys=False)
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)
