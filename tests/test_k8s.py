"""Kubernetes manifests against the real CRDs (unknown fields refused) and the operators' webhook rules."""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from launcher.cli import main
from launcher.errors import LaunchdeckError
from launcher.plan.kubernetes import KINDS, K8sRequest, manifests
from launcher.plan.prepare import prepare
from launcher.plan.request import LaunchRequest
from launcher.spec import engines
from launcher.spec.catalog import load_strategy, names

CRDS = Path(__file__).parent / "data" / "k8s"
SCHEMAS = {  # kind -> (CRD file, served version)
    "PyTorchJob": ("kubeflow.org_pytorchjobs.yaml", "v1"),
    "MPIJob": ("kubeflow.org_mpijobs.v2beta1.yaml", "v2beta1"),
    "TrainJob": ("trainer.kubeflow.org_trainjobs.yaml", "v1alpha1"),
}
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
IMAGE = "registry.example.com/team/train:1.0"


def strict(schema: dict) -> dict:
    """The schema with ``additionalProperties: false`` on every object that lists its properties (the API server
    prunes unknown fields; refusing them catches typos)."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and \
                    not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return schema


@functools.cache
def validator(kind: str) -> jsonschema.Draft7Validator:
    path, version = SCHEMAS[kind]
    crd = yaml.load((CRDS / path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return jsonschema.Draft7Validator(strict(served["schema"]["openAPIV3Schema"]))


def webhook_problems(job: dict) -> list[str]:
    """The operators' webhook rules and TrainJob's CEL name rule (tests/data/k8s/README.md)."""
    problems = [] if DNS_LABEL.match(job["metadata"]["name"]) and len(job["metadata"]["name"]) <= 63 else ["name"]
    spec = job["spec"]
    if job["kind"] == "PyTorchJob":
        for role, replica in spec.get("pytorchReplicaSpecs", {}).items():
            containers = replica["template"]["spec"]["containers"]
            if [c.get("image") for c in containers if c["name"] == "pytorch"] in ([], [None], [""]):
                problems.append(f"{role}: no container 'pytorch' with an image")
        if spec.get("pytorchReplicaSpecs", {}).get("Master", {"replicas": 1}).get("replicas") != 1:
            problems.append("Master replicas must be 1")
        if "elasticPolicy" in spec and "Worker" not in spec.get("pytorchReplicaSpecs", {}):
            problems.append("elasticPolicy needs a Worker spec")
        if "nProcPerNode" in spec.get("elasticPolicy", {}) and "nprocPerNode" in spec:
            problems.append("elasticPolicy.nProcPerNode with nprocPerNode")
    if job["kind"] == "MPIJob":
        replicas = spec["mpiReplicaSpecs"]
        if replicas["Launcher"].get("replicas") != 1 or replicas["Worker"].get("replicas", 0) < 1:
            problems.append("Launcher replicas must be 1 and Worker replicas >= 1")
        host = f"{job['metadata']['name']}-worker-{replicas['Worker']['replicas'] - 1}"
        problems += [] if len(host) <= 63 and DNS_LABEL.match(host) else [f"pod hostname {host}"]
    return problems


def problems(job: dict) -> list[str]:
    schema = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(job["kind"]).iter_errors(job)]
    return schema + webhook_problems(job)


def cases() -> list[tuple[str, str]]:
    return [(name, kind) for name in names() for kind in engines.get(load_strategy(name).engine).k8s_kinds]


@pytest.mark.parametrize("name, kind", cases())
def test_every_strategy_and_kind_is_valid_against_the_crds(name, kind):
    config_map, job = manifests(K8sRequest(name, nodes=3, gpus_per_node=4, image=IMAGE, kind=kind))
    assert problems(job) == []
    assert job["metadata"]["name"] == f"launchdeck-{name}" and job["kind"].lower() == kind
    rendered = json.loads(config_map["data"]["config.json"])
    assert (rendered.get("train_batch_size") or rendered["training"]["global_batch"]) % 12 == 0  # 12 ranks
    text = json.dumps(job)
    assert IMAGE in text and "launcher.payload.train" in text


def test_the_pytorchjob_runs_the_torchrun_transports_line(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("a slots=4\nb slots=4\n")
    printed = prepare(LaunchRequest("zero2", hostfile=str(hostfile), launcher="torchrun", master_port=1,
                                    run_dir="/var/run/launchdeck")).plan.nodes[1].argv
    _, job = manifests(K8sRequest("zero2", nodes=2, gpus_per_node=4, image=IMAGE))
    (command,) = {json.dumps(r["template"]["spec"]["containers"][0]["command"])
                  for r in job["spec"]["pytorchReplicaSpecs"].values()}
    pod = {"python": sys.executable, "$(RANK)": "1", "$(MASTER_ADDR)": "a", "$(MASTER_PORT)": "1",
           "/etc/launchdeck/config.json": "/var/run/launchdeck/config.json"}
    for placeholder, value in pod.items():
        command = command.replace(placeholder, value)
    assert json.loads(command) == printed
    assert [r["replicas"] for r in job["spec"]["pytorchReplicaSpecs"].values()] == [1, 1]


def test_elastic_renders_an_elastic_policy_and_lets_torchrun_read_the_rendezvous():
    _, job = manifests(K8sRequest("ddp", nodes=4, gpus_per_node=2, image=IMAGE, elastic=(2, 8)))
    assert problems(job) == []
    assert job["spec"]["elasticPolicy"] == {"minReplicas": 2, "maxReplicas": 8, "rdzvBackend": "c10d",
                                            "maxRestarts": 3}
    (worker,) = job["spec"]["pytorchReplicaSpecs"].values()
    command = worker["template"]["spec"]["containers"][0]["command"]
    assert worker["replicas"] == 4 and not any(a.startswith(("--nnodes=", "--node-rank=")) for a in command)


def test_horovod_runs_as_an_mpijob_with_its_settings_in_the_env():
    _, job = manifests(K8sRequest("horovod", nodes=2, gpus_per_node=4, image=IMAGE))
    launcher = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
    assert launcher[:3] == ["mpirun", "-np", "8"] and job["spec"]["slotsPerWorker"] == 4
    assert "HOROVOD_FUSION_THRESHOLD=67108864" in launcher
    assert "MASTER_ADDR=launchdeck-horovod-worker-0.launchdeck-horovod.default.svc" in launcher


@pytest.mark.parametrize("breakage, expected", [
    (lambda job: job["spec"].__setitem__("pytorchReplicaSpec", job["spec"].pop("pytorchReplicaSpecs")), "required"),
    (lambda job: _pod(job)["containers"][0].__setitem__("imagee", "x"), "imagee"),
    (lambda job: job["spec"]["pytorchReplicaSpecs"]["Master"].__setitem__("replicas", 2), "Master replicas"),
    (lambda job: _pod(job)["containers"][0].pop("image"), "no container 'pytorch' with an image"),
    (lambda job: _pod(job)["containers"][0].__setitem__("name", "trainer"), "no container 'pytorch'"),
])
def test_a_broken_manifest_is_caught(breakage, expected):
    _, job = manifests(K8sRequest("zero3", nodes=2, gpus_per_node=8, image=IMAGE))
    breakage(job)
    assert any(expected in problem for problem in problems(job)), problems(job)


def _pod(job: dict) -> dict:
    return job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]


@pytest.mark.parametrize("request_kw, message", [
    ({"strategy": "ddp", "kind": "mpijob"}, "--kind mpijob: strategy ddp \\(engine ddp\\) runs as pytorchjob or "
                                            "trainjob"),
    ({"strategy": "horovod", "kind": "pytorchjob"}, "runs as mpijob"),
    ({"image": "my image:1"}, "not an image reference"),
    ({"nodes": 0}, "must be >= 1"),
    ({"name": "Team_Job"}, "not a DNS label"),
    ({"name": "a" * 60, "nodes": 20}, "the pod name"),
    ({"elastic": (2, 8)}, "elastic node counts need engine ddp"),
    ({"strategy": "ddp", "elastic": (5, 8)}, "1 <= MIN <= --nodes"),
])
def test_bad_requests_are_one_clear_error(request_kw, message):
    request = {"strategy": "zero3", "nodes": 4, "gpus_per_node": 8, "image": IMAGE, **request_kw}
    with pytest.raises(LaunchdeckError, match=message):
        manifests(K8sRequest(**request))


@pytest.mark.parametrize("argv, fragment", [
    (["ddp", "--nodes", "2", "--image", IMAGE, "--kind", "mpijob"], "runs as pytorchjob or trainjob"),
    (["zero3", "--nodes", "2", "--image", "bad image"], "not an image reference"),
    (["zero3", "--nodes", "0", "--image", IMAGE], "--nodes"),
    (["ddp", "--nodes", "2", "--image", IMAGE, "--elastic", "two"], "expected MIN:MAX"),
])
def test_the_cli_refuses_bad_input_in_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as done:
        main(["k8s", *argv])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and fragment in err, err


def test_the_cli_writes_yaml_kubectl_reads_back(tmp_path):
    out = tmp_path / "job.yaml"
    with pytest.raises(SystemExit) as done:
        main(["k8s", "zero3", "--nodes", "2", "--image", IMAGE, "--kind", "trainjob", "-o", str(out)])
    assert done.value.code == 0
    config_map, job = yaml.safe_load_all(out.read_text())
    assert config_map["kind"] == "ConfigMap" and problems(job) == []
    assert job["spec"]["runtimeRef"] == {"name": "deepspeed-distributed"}
    assert set(KINDS) == {kind.lower() for kind in SCHEMAS}


def test_k8s_imports_no_torch(tmp_path):
    probe = ("import sys\nfrom launcher.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    assert e.code == 0, e.code\nassert not {'torch', 'deepspeed', 'ray'} & set(sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, "k8s", "zero3", "--nodes", "4", "--image", IMAGE],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
