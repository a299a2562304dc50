"""TrainJob (``trainer.kubeflow.org/v1alpha1``, Kubeflow Trainer 2): the trainer's command on a runtime the
cluster provides (``torch-distributed``, or ``deepspeed-distributed`` for DeepSpeed over MPI)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from ...spec import engines
from .mpijob import launch_line
from .pods import CONFIG_DIR, CONFIG_PATH, GPU, RUN_DIR, Job, metadata
from .pytorchjob import node_command

# The runtime mounts nothing of ours: the config travels in an env variable and is written before the start.
CONFIG_ENV = "LAUNCHDECK_CONFIG_JSON"


def build(job: Job) -> dict[str, Any]:
    req = job.request
    runtime, line = runtime_and_line(job)
    write_config = f'mkdir -p {CONFIG_DIR} {RUN_DIR} && printf "%s" "${CONFIG_ENV}" > {CONFIG_PATH}'
    env = {**job.env, CONFIG_ENV: json.dumps(job.rendered.config)}
    trainer = {"image": req.image, "command": ["sh", "-c", f"{write_config} && exec {shlex.join(line)}"],
               "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
               "numNodes": req.nodes, "numProcPerNode": req.gpus_per_node,
               "resourcesPerNode": {"limits": {GPU: req.gpus_per_node}}}
    spec = {"runtimeRef": {"name": runtime}, "trainer": trainer}
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": metadata(job),
            "spec": spec}


def runtime_and_line(job: Job) -> tuple[str, list[str]]:
    """The engine's runtime (engine registry) and the line that runs on it."""
    runtime = engines.get(job.rendered.engine).k8s_runtime
    return runtime, RUNTIMES[runtime](job)


def _torchrun(job: Job) -> list[str]:
    """torchrun's line with the rendezvous left to the runtime's PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR
    and PET_MASTER_PORT."""
    return node_command(job, None)


RUNTIMES = {"torch-distributed": _torchrun, "deepspeed-distributed": launch_line}  # runtime -> its line
