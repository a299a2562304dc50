"""Kubernetes manifests for the Kubeflow operators: a ConfigMap with the rendered config plus a PyTorchJob,
an MPIJob or a TrainJob that runs a catalog strategy. Nothing here talks to a cluster; tests validate every
manifest against the operators' CRDs and their webhooks' rules.

:func:`manifests` is the entry point; one module per kind builds its job (:mod:`.pytorchjob`, :mod:`.mpijob`,
:mod:`.trainjob`), :mod:`.pods` the pieces they share (container, config volume, GPU resources, names).
"""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import LaunchdeckError
from ...render import Cluster, render
from ...spec import engines
from ...spec.catalog import load_strategy
from ..prepare import rank_command
from ..request import LaunchRequest, with_steps
from .pods import CONFIG_PATH, RUN_DIR, Job, K8sRequest, check_request, config_map

__all__ = ["KINDS", "K8sRequest", "manifests"]

KINDS = ("pytorchjob", "mpijob", "trainjob")


def manifests(req: K8sRequest) -> list[dict[str, Any]]:
    """The ConfigMap and the job for ``req`` (the job's kind: ``req.kind`` or the engine's first)."""
    strategy = load_strategy(req.strategy, with_steps(req.overrides, req.steps))
    spec = engines.get(strategy.engine)
    kind = req.kind or next(iter(spec.k8s_kinds), "pytorchjob")
    if kind not in spec.k8s_kinds:
        raise LaunchdeckError(f"--kind {kind}: strategy {strategy.name} (engine {spec.name}) runs as "
                              f"{' or '.join(spec.k8s_kinds) or 'no Kubernetes job'}")
    check_request(req, kind, spec)
    rendered = render(strategy, Cluster(req.nodes * req.gpus_per_node, req.gpus_per_node, "gpu"))
    request = LaunchRequest(req.strategy, model=req.model, script=req.script, run_dir=RUN_DIR)
    command, env = rank_command(request, rendered, RUN_DIR, CONFIG_PATH, cpu=False)
    job = Job(req, rendered, command, env)
    builder = importlib.import_module(f"{__name__}.{kind}")
    return [config_map(job), builder.build(job)]
