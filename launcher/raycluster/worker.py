"""What each Ray worker runs: launchdeck's per-rank agent around the rank's command (the payload or the user's
script), its output carried back to the driver over one TCP connection, the way ssh carries a node's output.

The agent writes the rank's logs into the run record, beats, and reports the rank's end (:mod:`launcher.node.agent`);
the driver prints what it relays, so the launcher watches a Ray job exactly as it watches an ssh one. When the
worker is killed (the job was cancelled, another worker failed), nothing reads the agent's output any more: its
next heartbeat fails and it tears its rank down.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import asdict
from typing import Any

from .job import RayJob

CONNECT_TIMEOUT_S = 10.0


class RankFailed(RuntimeError):
    """A rank ended with a non-zero code: raised in its Ray worker, so Ray reports that worker as failed."""


def config(job: RayJob, relay: tuple[str, int]) -> dict[str, Any]:
    """What the driver passes every worker (plain data: Ray pickles it)."""
    return {"job": asdict(job), "relay": list(relay)}


def torch_worker(config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``. Ray placed this worker and made a gloo group across the workers;
    rank 0 picks the ranks' own rendezvous (a free port on its node) and shares it over that group."""
    import ray.train
    import torch.distributed as dist

    ctx, host = ray.train.get_context(), _node_ip()
    shared: list[Any] = [(host, _free_port(host)) if ctx.get_world_rank() == 0 else None]
    dist.broadcast_object_list(shared, src=0)
    master, port = shared[0]
    env = {"RANK": ctx.get_world_rank(), "WORLD_SIZE": ctx.get_world_size(), "LOCAL_RANK": ctx.get_local_rank(),
           "LOCAL_WORLD_SIZE": ctx.get_local_world_size(), "GROUP_RANK": ctx.get_node_rank(),
           "MASTER_ADDR": master, "MASTER_PORT": port}
    run_rank(config, host, {k: str(v) for k, v in env.items()}, ctx.get_world_rank())


def horovod_worker(config: dict[str, Any]) -> None:
    """``RayExecutor.run``'s function: Horovod has set HOROVOD_RANK & co. and its gloo rendezvous in this process."""
    run_rank(config, _node_ip(), {}, int(os.environ.get("HOROVOD_RANK", "-1")))


def run_rank(config: dict[str, Any], host: str, env: dict[str, str], rank: int) -> None:
    """The rank under its agent, in the job's directory, with the job's env; its non-zero exit is raised."""
    job = RayJob(**config["job"])
    argv = [*job.agent, f"--host={host}", "--", *job.command]
    code = relay(argv, {**os.environ, **job.env, **env}, job.cwd, (config["relay"][0], config["relay"][1]))
    if code:
        raise RankFailed(f"rank {rank} on {host} exited with code {code}")


def relay(argv: list[str], env: dict[str, str], cwd: str, driver: tuple[str, int]) -> int:
    """Run ``argv`` and send its output, line by line, to the driver; its exit code. When the driver is gone,
    stop reading: the agent's next heartbeat fails and it ends the rank."""
    with socket.create_connection(driver, timeout=CONNECT_TIMEOUT_S) as conn:
        conn.settimeout(None)
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                conn.sendall(line)
        except OSError:
            pass
        finally:
            proc.stdout.close()
        return proc.wait()


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
