"""OpenMPI: one mpirun starts every rank; env with -x, hosts from a hostfile in the run record."""

from __future__ import annotations

import os

from ...cluster.hosts import Host, format_hosts
from ..model import LaunchPlan
from .common import ClusterContext, make_plan, one_command, rank_agents, rank_argv, rank_nodes, rendezvous_env
from .ssh import remote_shell


def hostfile_path(ctx: ClusterContext) -> str:
    return os.path.join(ctx.run_dir, "hostfile.mpi")


def hostfile_text(ctx: ClusterContext) -> str:
    return format_hosts([Host(h, len(s)) for h, s in ctx.slots.items()], "mpi")


def plan_openmpi(ctx: ClusterContext) -> LaunchPlan:
    env = {**ctx.env, **rendezvous_env(ctx)}
    argv = ["mpirun", "-np", str(ctx.world_size), "--hostfile", hostfile_path(ctx), "--map-by", "slot",
            "--bind-to", "none"]  # no --tag-output: each rank's agent prefixes its lines with its rank
    if os.geteuid() == 0:
        argv.append("--allow-run-as-root")
    if ctx.network_interface:
        argv += ["--mca", "btl_tcp_if_include", ctx.network_interface,
                 "--mca", "oob_tcp_if_include", ctx.network_interface]
    if ctx.ssh_port or ctx.ssh_key:
        rsh = (["-p", str(ctx.ssh_port)] if ctx.ssh_port else []) + (["-i", ctx.ssh_key] if ctx.ssh_key else [])
        argv += ["--mca", "plm_rsh_args", " ".join(rsh)]
    for name, value in sorted(env.items()):
        argv += ["-x", f"{name}={value}"]  # mpirun passes the value itself: no shell sees it
    argv += rank_argv(ctx)
    nodes = rank_nodes(ctx, rendezvous_env(ctx))
    agents = rank_agents(nodes)
    return make_plan(ctx, "openmpi", nodes, [one_command("openmpi", argv, agents)], agents,
                     {hostfile_path(ctx): hostfile_text(ctx)}, remote_shell=remote_shell(ctx))
