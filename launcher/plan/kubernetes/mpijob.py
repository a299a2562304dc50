"""MPIJob (``kubeflow.org/v2beta1``, MPI Operator): a launcher pod runs mpirun across the worker pods, the
openmpi transport's line without launchdeck's agent (the operator watches the pods)."""

from __future__ import annotations

from typing import Any

from .pods import PYTHON, Job, container, metadata, pod_template

RENDEZVOUS_PORT = 29500  # torch.distributed's, for engines that join a process group under mpirun


def build(job: Job) -> dict[str, Any]:
    req = job.request
    launcher = {"replicas": 1, "restartPolicy": "OnFailure",
                "template": pod_template(job, [container(job, "launcher", launch_line(job), 0)])}
    worker = {"replicas": req.nodes, "restartPolicy": "OnFailure",
              "template": pod_template(job, [container(job, "worker", [], req.gpus_per_node)])}
    spec = {"slotsPerWorker": req.gpus_per_node, "mpiImplementation": "OpenMPI", "runPolicy": {
        "cleanPodPolicy": "Running"}, "mpiReplicaSpecs": {"Launcher": launcher, "Worker": worker}}
    return {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": metadata(job), "spec": spec}


def launch_line(job: Job) -> list[str]:
    """``mpirun`` over the operator's hostfile (``OMPI_MCA_orte_default_hostfile``): every rank runs the
    command with the job's env, the engine's own settings env (Horovod's) and a rendezvous for torch."""
    env = {**job.env, **job.rendered.config.get("env", {}), **rendezvous(job)}
    argv = ["mpirun", "-np", str(job.world_size), "--map-by", "slot", "--bind-to", "none",
            "--allow-run-as-root"]  # many training images run as root; a no-op for any other user
    for name, value in sorted(env.items()):
        argv += ["-x", f"{name}={value}"]  # mpirun passes the value itself: no shell sees it
    return [*argv, PYTHON, "-u", *job.command]


def rendezvous(job: Job) -> dict[str, str]:
    """The first worker pod, by the name the operator gives it on its headless service."""
    host = f"{job.name}-worker-0.{job.name}.{job.request.namespace}.svc"
    return {"MASTER_ADDR": host, "MASTER_PORT": str(RENDEZVOUS_PORT)}
