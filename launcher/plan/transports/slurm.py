"""Slurm: srun inside an allocation starts one torchrun per node; sizes come from the allocation."""

from __future__ import annotations

import os
import shlex

from ... import entrypoints
from ...cluster.schedulers import slurm_counts
from ..model import LaunchPlan
from .common import (
    ClusterContext,
    ShellWord,
    agent_argv,
    flag,
    make_plan,
    node_agents,
    node_argv,
    one_command,
    python,
    remote_command,
    torchrun_nodes,
)

NODE_ID = ShellWord("SLURM_NODEID")  # expanded by each node's shell: the only unquoted piece of the line


def plan_slurm(ctx: ClusterContext) -> LaunchPlan:
    """``srun --kill-on-bad-exit=1``: one rank failing ends the step on every node."""
    nproc = len(next(iter(ctx.slots.values())))
    def agent(index: int | str, host: str) -> list[str]:
        return agent_argv(ctx, flag("--node=", index))

    line = remote_command(os.getcwd(), ctx.env, node_argv(ctx, agent, NODE_ID, "", nproc))
    # --ntasks too: srun would otherwise take the allocation's SLURM_NTASKS (every rank) and refuse the step
    argv = ["srun", "--kill-on-bad-exit=1", f"--nodes={len(ctx.slots)}", f"--ntasks={len(ctx.slots)}",
            "--ntasks-per-node=1", f"--cpus-per-task={node_cpus()}", "--export=ALL", "--label", "sh", "-c", line]
    nodes = torchrun_nodes(ctx, agent)
    agents = node_agents(nodes)
    return make_plan(ctx, "slurm", nodes, [one_command("slurm", argv, agents)], agents)


def node_cpus() -> int:
    """The CPUs every node's one task (torchrun and its ranks) gets: all the allocation has on its smallest
    node (``SLURM_JOB_CPUS_PER_NODE``, e.g. ``64(x2)``, ``8,4``, ``8(x2),4``)."""
    per_node = os.environ.get("SLURM_JOB_CPUS_PER_NODE") or os.environ.get("SLURM_CPUS_ON_NODE") or "1"
    return min(slurm_counts(per_node, "SLURM_JOB_CPUS_PER_NODE"))


def batch_script(*, job_name: str, nodes: int, gpus_per_node: int, time: str, partition: str | None,
                 account: str | None, launch_args: list[str]) -> str:
    """A complete sbatch script that runs ``launchdeck launch … --launcher slurm`` in its allocation."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --nodes={nodes}",
             f"#SBATCH --ntasks-per-node={gpus_per_node}", f"#SBATCH --time={time}", "#SBATCH --output=%x-%j.out"]
    if gpus_per_node and "--cpu" not in launch_args:
        lines.append(f"#SBATCH --gpus-per-node={gpus_per_node}")
    lines += [f"#SBATCH --partition={partition}"] if partition else []
    lines += [f"#SBATCH --account={account}"] if account else []
    lines += ["set -euo pipefail", f"cd {shlex.quote(os.getcwd())}",
              shlex.join([python(), "-m", entrypoints.CLI, "launch", *launch_args, "--launcher", "slurm"])]
    return "\n".join(lines) + "\n"
