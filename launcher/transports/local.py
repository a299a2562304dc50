"""This machine only: one torchrun (torch's elastic agent) starting every local rank."""

from __future__ import annotations

import os
import socket
import sys

from ..plan import LaunchPlan, NodePlan

OUTPUT_ENV = {"TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE": "[rank${rank}]:", "PYTHONUNBUFFERED": "1"}


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out as free, so two jobs on one host never collide on 29500."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def torchrun_argv(nproc: int, nnodes: int, node_rank: int, master_addr: str, master_port: int,
                  log_dir: str, command: list[str]) -> list[str]:
    """``python -m torch.distributed.run …``: static rendezvous, no restarts, flat per-rank logs."""
    return [sys.executable, "-m", "torch.distributed.run",
            f"--nnodes={nnodes}", f"--nproc-per-node={nproc}", f"--node-rank={node_rank}",
            f"--master-addr={master_addr}", f"--master-port={master_port}",
            "--max-restarts=0", "--monitor-interval=0.1", "--shutdown-timeout=5",
            f"--log-dir={log_dir}", "--logs-specs=launchdeck", "--redirects=3", "--tee=3",
            "--local-ranks-filter=0", *command]


def plan(*, strategy: str, engine: str, nproc: int, run_dir: str, config_path: str, command: list[str],
         env: dict[str, str]) -> LaunchPlan:
    port = free_port()
    argv = torchrun_argv(nproc, 1, 0, "127.0.0.1", port, os.path.join(run_dir, "logs"), command)
    node_env = {**OUTPUT_ENV, **env}
    node = NodePlan(host="localhost", argv=argv, cwd=os.getcwd(), interpreter=sys.executable, env=node_env,
                    ranks=list(range(nproc)))
    return LaunchPlan(strategy=strategy, engine=engine, transport="local", world_size=nproc,
                      master_addr="127.0.0.1", master_port=port, run_dir=run_dir, config_path=config_path,
                      nodes=[node], commands=[argv])
