"""PyTorchJob (``kubeflow.org/v1``, Training Operator): one torchrun per pod, the torchrun transport's line."""

from __future__ import annotations

from typing import Any

from ..transports.common import ClusterContext, torchrun_argv
from .pods import PYTHON, RUN_DIR, Job, container, metadata, pod_template

PORT = 23456  # the operator's default; it sets MASTER_PORT to it in every pod
# The operator sets these in every pod; Kubernetes expands $(NAME) in a container's command.
NODE_RANK, MASTER_ADDR, MASTER_PORT = "$(RANK)", "$(MASTER_ADDR)", "$(MASTER_PORT)"


def build(job: Job) -> dict[str, Any]:
    req = job.request
    spec: dict[str, Any] = {"nprocPerNode": str(req.gpus_per_node), "pytorchReplicaSpecs": _replicas(job),
                            "runPolicy": {"cleanPodPolicy": "Running"}}
    if req.elastic:
        low, high = req.elastic
        spec["elasticPolicy"] = {"minReplicas": low, "maxReplicas": high, "rdzvBackend": "c10d", "maxRestarts": 3}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": metadata(job), "spec": spec}


def node_command(job: Job, node_rank: str | None) -> list[str]:
    """The line the torchrun transport prints per node, with ``node_rank`` and the rendezvous from the
    operator's env (None: torchrun reads the whole rendezvous from the operator's PET_* variables)."""
    req = job.request
    ctx = ClusterContext(totals={}, slots={f"node{i}": list(range(req.gpus_per_node)) for i in range(req.nodes)},
                         command=job.command, env=job.env, run_dir=RUN_DIR, config_path="", strategy=job.name,
                         engine=job.rendered.engine, master_addr=MASTER_ADDR, master_port=MASTER_PORT,
                         rendezvous_host="", interpreter=PYTHON)
    return torchrun_argv(ctx, node_rank, req.gpus_per_node)


def _replicas(job: Job) -> dict[str, Any]:
    req = job.request
    command = node_command(job, None if req.elastic else NODE_RANK)  # elastic: the operator's c10d rendezvous
    worker = {"replicas": req.nodes - (0 if req.elastic else 1), "restartPolicy": "OnFailure",
              "template": pod_template(job, [_pytorch(job, command)])}
    if req.elastic:
        return {"Worker": worker}
    master = {"replicas": 1, "restartPolicy": "OnFailure", "template": pod_template(job, [_pytorch(job, command)])}
    return {"Master": master, "Worker": worker} if req.nodes > 1 else {"Master": master}


def _pytorch(job: Job, command: list[str]) -> dict[str, Any]:
    spec = container(job, "pytorch", command, job.request.gpus_per_node)  # the operator requires this name
    spec["ports"] = [{"name": "pytorchjob-port", "containerPort": PORT}]
    return spec

