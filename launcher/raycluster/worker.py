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

from ..node import events
from .job import RayJob

CONNECT_TIMEOUT_S = 10.0


class RankFailed(RuntimeError):
    """A rank ended with a non-zero code (or its agent without a word): raised in its Ray worker, so Ray reports
    that worker as failed."""


def config(job: RayJob, relay: tuple[str, int], token: str) -> dict[str, Any]:
    """What the driver passes every worker (plain data: Ray pickles it); ``token`` opens the driver's relay."""
    return {"job": asdict(job), "relay": list(relay), "token": token}


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
    """The rank under its agent, in the job's directory, with the job's env; a failure is raised."""
    job = RayJob(**config["job"])
    argv = [*job.agent, f"--host={host}", "--", *job.command]
    driver = (config["relay"][0], config["relay"][1])
    code = relay(argv, {**os.environ, **job.env, **env}, job.cwd, driver, config["token"])
    if code is None:
        raise RankFailed(f"rank {rank} on {host}: its agent ended without reporting the rank's end")
    if code:
        raise RankFailed(f"rank {rank} on {host} exited with code {code}")


def relay(argv: list[str], env: dict[str, str], cwd: str, driver: tuple[str, int], token: str) -> int | None:
    """Run ``argv`` (an agent) and send its output, line by line, to the driver; the exit code its agent reported
    (None: it ended without one). The agent runs detached (``setsid -f``): Ray kills a worker's own children when
    the worker goes, which would leave the agent no time to stop its rank; detached, it sees nobody reads it any
    more and tears its rank down. When the driver is gone, this stops reading, to the same end. ``setsid -w`` waits
    for the agent: its code stands in when the agent's own report was lost."""
    tag = events.tag_for(env.get("LAUNCHDECK_RUN_DIR", ""))
    with socket.create_connection(driver, timeout=CONNECT_TIMEOUT_S) as conn:
        conn.settimeout(None)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # a driver host that vanished ends the send
        conn.sendall(token.encode() + b"\n")
        proc = subprocess.Popen(["setsid", "-f", "-w", *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        code = None
        try:
            for line in proc.stdout:
                conn.sendall(line)
                code = reported_code(line, tag, code)
        except OSError:
            pass
        finally:
            proc.stdout.close()
        waited = proc.wait()
        return code if code is not None else (waited if waited >= 0 else None)


def reported_code(line: bytes, tag: str, code: int | None) -> int | None:
    """The rank's exit code when ``line`` is its agent's ``exit`` event, else ``code`` unchanged."""
    event = events.decode(line.decode(errors="replace"), tag)
    return event["code"] if event and event["kind"] == "exit" else code


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
