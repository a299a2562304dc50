"""``python -m launcher.raycluster.check RUN_DIR/ray-job.json``: can this Ray cluster run the job? For launch's
preflight and ``doctor --launcher ray``. One JSON line of facts on stdout, or one line saying what is wrong on
stderr and exit code 2. A cluster that does not answer is refused within :data:`ATTACH_DEADLINE_S`.

Checked in order, each only after the one before it held: what the runner imports is installed here, the head
answers (a plain TCP connect), this machine is a node the driver can attach to, the nodes have room for every
worker (CPUs and GPUs per worker, per node: a worker never spans two nodes), and each node that has room has
``setsid``, this machine's interpreter and directory, sees the run directory (when the job file is in it), and
runs the same Python, torch, DeepSpeed, Ray (and Horovod) as this machine.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from .driver import attach
from .job import RayJob

ATTACH_DEADLINE_S = 10.0  # reaching the head and attaching: a bad --ray-address is refused within 15 s
CONNECT_S = 3.0
NODES_TIMEOUT_S = 30.0  # every node's answer (a task on each: a worker process starts there)
PACKAGES = ("torch", "deepspeed", "ray")
RUNNER_MODULES = {"torch": ("ray.train",), "horovod": ("ray", "horovod.ray")}  # what the driver imports


class Problem(Exception):
    """What makes the cluster unfit for the job, in one line."""


def reach(address: str) -> None:
    """The head's GCS port answers (skipped for "auto": Ray finds the local cluster itself)."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_S).close()
    except (OSError, ValueError) as error:
        raise Problem(f"cannot reach the Ray cluster at {address}: {error}") from None


def nodes() -> list[dict[str, Any]]:
    """The live nodes: id, address and resources."""
    import ray

    return [{"id": n["NodeID"], "ip": n["NodeManagerAddress"], "cpu": n["Resources"].get("CPU", 0.0),
             "gpu": n["Resources"].get("GPU", 0.0)} for n in ray.nodes() if n["Alive"]]


def room(node: dict[str, Any], job: RayJob) -> int:
    """How many of the job's workers fit on ``node``."""
    fits = int(node["cpu"] // job.cpus_per_worker) if job.cpus_per_worker else job.world_size
    return min(fits, int(node["gpu"] // job.gpus_per_worker)) if job.gpus_per_worker else fits


def check_room(found: list[dict[str, Any]], job: RayJob) -> None:
    total = sum(room(node, job) for node in found)
    if total >= job.world_size:
        return
    each = f"{job.cpus_per_worker:g} CPU" + (f" + {job.gpus_per_worker:g} GPU" if job.gpus_per_worker else "")
    have = ", ".join(f"{n['ip']} {n['cpu']:g} CPU/{n['gpu']:g} GPU" for n in found)
    hint = "" if job.gpus_per_worker else " (or lower --nproc)"
    hint = " (GPU workers: add --cpu to run on CPUs)" if job.gpus_per_worker and not any(n["gpu"] for n in found) \
        else hint
    raise Problem(f"the Ray cluster has room for {total} of the {job.world_size} workers the plan needs "
                  f"({each} each; nodes: {have}){hint}")


def packages(names: tuple[str, ...]) -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def node_facts(shared: str | None, names: tuple[str, ...], python: str, cwd: str) -> dict[str, Any]:
    """On a node: its versions, whether it sees a file of the run record (a filesystem shared with here), and
    whether it has the interpreter and the directory the ranks run with."""
    return {"versions": packages(names), "shared": shared is None or os.access(shared, os.R_OK),
            "python": os.access(python, os.X_OK), "cwd": os.path.isdir(cwd), "setsid": bool(shutil.which("setsid"))}


def on_every_node(found: list[dict[str, Any]], job: RayJob, shared: str | None,
                  names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0)(node_facts)
    refs = {n["ip"]: task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["id"], soft=False))
            .remote(shared, names, job.agent[0], job.cwd) for n in found}
    try:
        return dict(zip(refs, ray.get(list(refs.values()), timeout=NODES_TIMEOUT_S), strict=True))
    except ray.exceptions.GetTimeoutError:
        raise Problem(f"the Ray nodes did not all answer within {NODES_TIMEOUT_S:g} s") from None
    except ray.exceptions.RayError as error:
        raise Problem(f"a Ray node could not run the check: {_first(error)}") from None


def compare(facts: dict[str, dict[str, Any]], job: RayJob, shared: str | None, names: tuple[str, ...]) -> list[str]:
    here, problems = packages(names), []
    for ip, found in facts.items():
        if not found["setsid"]:
            problems.append(f"{ip} has no setsid (util-linux): each rank's agent runs detached from its Ray worker")
        if not found["python"] or not found["cwd"]:
            problems.append(f"{ip} has no {job.agent[0] if not found['python'] else job.cwd}: every Ray node needs "
                            "this machine's interpreter and directory at the same paths")
        if not found["shared"]:
            problems.append(f"{ip} does not see {shared}: the run directory must be on a filesystem every Ray "
                            "node shares (--run-dir)")
        problems += [f"{ip} has {name} {theirs}, this machine {here[name]}"
                     for name, theirs in found["versions"].items() if theirs != here[name]]
    return problems


def check(job: RayJob, shared: str | None, names: tuple[str, ...]) -> dict[str, Any]:
    """Every check in order; the live nodes and, per node with room for a worker, what it runs."""
    missing = [name for name in RUNNER_MODULES[job.runner] if not _installed(name)]
    if missing:
        raise Problem(f"--launcher ray needs {' and '.join(missing)} here: pip install 'launchdeck[ray]'"
                      + (" and a Horovod built with Ray support" if "horovod.ray" in missing else ""))
    reach(job.address)
    timer = threading.Timer(ATTACH_DEADLINE_S, _deadline, args=(job.address,))
    timer.daemon = True
    timer.start()
    try:
        attach(job.address)
    except Exception as error:  # Ray's own message names what it could not find
        raise Problem(f"cannot attach to the Ray cluster at {job.address} from this machine ({_first(error)}); "
                      "a Ray driver runs on a node: `ray start --address HEAD:PORT --num-cpus 0` here") from None
    timer.cancel()
    found = nodes()
    check_room(found, job)
    facts = on_every_node([n for n in found if room(n, job)], job, shared, names)
    if problems := compare(facts, job, shared, names):
        raise Problem("; ".join(problems))
    return {"nodes": found, "facts": facts}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _first(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _deadline(address: str) -> None:
    print(f"launchdeck: no Ray cluster answered at {address} within {ATTACH_DEADLINE_S:g} s", file=sys.stderr,
          flush=True)
    os._exit(2)


def main(argv: list[str] | None = None) -> int:
    """``check JOB.json``; a job file outside its run directory (doctor's copy, before any record exists) is not
    asked to be seen by the nodes."""
    path = Path((argv if argv is not None else sys.argv[1:])[0])
    job = RayJob.read(path)
    shared = path.parent == Path(job.run_dir)
    names = PACKAGES + (("horovod",) if job.runner == "horovod" else ())
    try:
        print(json.dumps(check(job, str(path) if shared else None, names)), flush=True)
        return 0
    except Problem as problem:
        print(f"launchdeck: {problem}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
