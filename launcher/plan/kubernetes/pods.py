"""What every Kubernetes job kind shares: the request, names, the config volume, the container, resources."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ...errors import LaunchdeckError
from ...render import RenderedConfig
from ...spec.engines import EngineSpec

CONFIG_DIR = "/etc/launchdeck"  # the ConfigMap, mounted read-only in every pod
CONFIG_PATH = f"{CONFIG_DIR}/config.json"
RUN_DIR = "/var/run/launchdeck"  # an emptyDir: per-rank logs, result.json
GPU = "nvidia.com/gpu"
PYTHON = "python"  # the image's interpreter, from its PATH
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # RFC 1035 (TrainJob's rule for names)
_IMAGE = re.compile(r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
                    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")


@dataclass(frozen=True)
class K8sRequest:
    """What `launchdeck k8s` is asked for: a strategy on ``nodes`` pods of ``gpus_per_node`` GPUs each, from
    ``image``; ``kind`` None picks the engine's first kind; ``elastic`` (min, max) nodes for a PyTorchJob."""

    strategy: str
    nodes: int
    gpus_per_node: int
    image: str
    kind: str | None = None
    overrides: tuple[str, ...] = ()
    steps: int | None = None
    model: str = "tiny"
    script: tuple[str, ...] = ()
    elastic: tuple[int, int] | None = None
    namespace: str = "default"
    name: str | None = None  # default: launchdeck-<strategy>

    @property
    def job_name(self) -> str:
        return self.name or f"launchdeck-{self.strategy}"


@dataclass(frozen=True)
class Job:
    """A request, rendered: the config every rank reads, the command each rank runs and launchdeck's env."""

    request: K8sRequest
    rendered: RenderedConfig
    command: list[str]  # what each rank runs after the interpreter: ['-m', 'launcher.payload.train', …]
    env: dict[str, str]

    @property
    def name(self) -> str:
        return self.request.job_name

    @property
    def world_size(self) -> int:
        return self.request.nodes * self.request.gpus_per_node


def check_request(req: K8sRequest, kind: str, spec: EngineSpec) -> None:
    """Names, image and sizes the API server and the operators' webhooks would refuse, refused here first."""
    if req.nodes < 1 or req.gpus_per_node < 1:
        raise LaunchdeckError(f"--nodes and --gpus-per-node must be >= 1 (got {req.nodes}, {req.gpus_per_node})")
    if not _IMAGE.match(req.image):
        raise LaunchdeckError(f"--image {req.image!r} is not an image reference (e.g. registry/team/train:1.0)")
    longest = f"{req.job_name}-worker-{req.nodes - 1}"  # the longest pod hostname any operator makes
    for what, value in (("--name", req.job_name), ("--namespace", req.namespace), ("the pod name", longest)):
        if len(value) > 63 or not _DNS_LABEL.match(value):
            raise LaunchdeckError(f"{what} {value!r} is not a DNS label (lower-case letters, digits and '-', "
                                  "starting with a letter, at most 63 characters)")
    if req.elastic:
        _check_elastic(req, kind, spec)


def _check_elastic(req: K8sRequest, kind: str, spec: EngineSpec) -> None:
    low, high = req.elastic
    if kind != "pytorchjob":
        raise LaunchdeckError(f"--elastic needs --kind pytorchjob (torchrun's c10d rendezvous), not {kind}")
    if spec.native_config:
        raise LaunchdeckError(f"--elastic: {spec.name} fixes the global batch for {req.nodes} node(s) in its "
                              "config; elastic node counts need engine ddp")
    if not 1 <= low <= req.nodes <= high:
        raise LaunchdeckError(f"--elastic {low}:{high} must satisfy 1 <= MIN <= --nodes ({req.nodes}) <= MAX")


def metadata(job: Job, suffix: str = "") -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "launchdeck", "launchdeck/strategy": job.rendered.strategy.name}
    return {"name": job.name + suffix, "namespace": job.request.namespace, "labels": labels}


def config_map(job: Job) -> dict[str, Any]:
    """The rendered config, mounted at ``CONFIG_DIR`` in every pod."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(job, "-config"),
            "data": {"config.json": json.dumps(job.rendered.config, indent=2) + "\n"}}


def container(job: Job, name: str, command: list[str], gpus: int) -> dict[str, Any]:
    """One container: the image, the command (none: the image's own, e.g. sshd on MPI workers), launchdeck's
    env, the config and run volumes, ``gpus`` GPUs."""
    spec: dict[str, Any] = {
        "name": name, "image": job.request.image, **({"command": command} if command else {}),
        "env": [{"name": k, "value": v} for k, v in sorted(job.env.items())],
        "volumeMounts": [{"name": "launchdeck-config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "launchdeck-run", "mountPath": RUN_DIR}],
    }
    if gpus:
        spec["resources"] = {"limits": {GPU: gpus}}
    return spec


def pod_template(job: Job, containers: list[dict[str, Any]]) -> dict[str, Any]:
    volumes = [{"name": "launchdeck-config", "configMap": {"name": job.name + "-config"}},
               {"name": "launchdeck-run", "emptyDir": {}}]
    return {"metadata": {"labels": metadata(job)["labels"]}, "spec": {"containers": containers, "volumes": volumes}}
