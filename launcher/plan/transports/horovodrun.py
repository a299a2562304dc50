"""horovodrun: one command for every host, gloo controller, flags from the rendered Horovod settings."""

from __future__ import annotations

import os

from ..model import LaunchPlan
from .common import ClusterContext, make_plan, one_command, python, rank_agents, rank_argv, rank_nodes, rendezvous_env
from .ssh import remote_shell


def horovodrun_path() -> str:
    """horovodrun beside this interpreter (the venv's), else from PATH."""
    beside = os.path.join(os.path.dirname(python()), "horovodrun")
    return beside if os.path.exists(beside) else "horovodrun"


def plan_horovodrun(ctx: ClusterContext) -> LaunchPlan:
    rendered_args = list(ctx.extra.get("horovodrun", [])) or ["-np", str(ctx.world_size), "--gloo"]
    argv = [horovodrun_path(), *rendered_args, "-H", ",".join(f"{h}:{len(s)}" for h, s in ctx.slots.items())]
    if ctx.network_interface:
        argv += ["--network-interfaces", ctx.network_interface]
    if ctx.ssh_port:
        argv += ["-p", str(ctx.ssh_port)]
    if ctx.ssh_key:
        argv += ["-i", ctx.ssh_key]
    argv += rank_argv(ctx)  # each rank's agent writes logs/rank<R>.log and .err.log
    rendezvous = rendezvous_env(ctx)  # torch.distributed engines (ddp, deepspeed) work under horovodrun too
    env_argv = ["env", *(f"{k}={v}" for k, v in sorted({**ctx.env, **rendezvous}.items())), *argv]  # it forwards env
    nodes = rank_nodes(ctx, rendezvous)
    agents = rank_agents(nodes)
    return make_plan(ctx, "horovodrun", nodes, [one_command("horovodrun", env_argv, agents)], agents,
                     remote_shell=remote_shell(ctx))
