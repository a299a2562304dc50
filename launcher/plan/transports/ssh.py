"""ssh and pdsh: one torchrun per host, started over ssh with an explicit env (no env files)."""

from __future__ import annotations

from ...errors import LaunchdeckError
from ..model import Command, LaunchPlan
from .common import (
    ClusterContext,
    agent_argv,
    make_plan,
    node_agents,
    node_argv,
    one_command,
    remote_command,
    torchrun_nodes,
)


def ssh_options(port: int | None, key: str | None) -> list[str]:
    options = ["-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ServerAliveInterval=15",
               "-o", "ConnectTimeout=10"]
    if port:
        options += ["-p", str(port)]
    if key:
        options += ["-i", key]
    return options


def remote_shell(ctx: ClusterContext) -> list[str]:
    """``ssh OPTIONS``: how launchdeck reaches a host (each node's torchrun, preflight, reaping a frozen node)."""
    return ["ssh", *ssh_options(ctx.ssh_port, ctx.ssh_key)]


def plan_ssh(ctx: ClusterContext) -> LaunchPlan:
    """One ssh per node; its agent stops the node when the launcher closes that ssh's stdin."""
    nodes = torchrun_nodes(ctx, lambda index, host: agent_argv(ctx, f"--node={index}", f"--host={host}",
                                                               "--stdin-stop"))
    shell, agents = remote_shell(ctx), node_agents(nodes)
    commands = [Command(f"ssh {node.host}", [*shell, node.host, remote_command(node.cwd, node.env, node.argv)],
                        node.cwd, agents=[agent], stop="stdin", label=f"[{node.host}] ")
                for node, agent in zip(nodes, agents, strict=True)]
    return make_plan(ctx, "ssh", nodes, commands, agents, remote_shell=shell)


def plan_pdsh(ctx: ClusterContext) -> LaunchPlan:
    """One pdsh for all hosts; pdsh replaces %n with each host's index (its node rank) and %h with its name."""
    if len({tuple(s) for s in ctx.slots.values()}) > 1:
        raise LaunchdeckError("--launcher pdsh runs one command on every host, so every host needs the same "
                              "slots; use --launcher ssh for uneven hosts")
    def agent(index: int | str, host: str) -> list[str]:
        return agent_argv(ctx, f"--node={index}", f"--host={host}")

    nodes = torchrun_nodes(ctx, agent)
    env = nodes[0].env
    if any("%" in v for v in env.values()):
        raise LaunchdeckError("pdsh rewrites %h/%u/%n inside commands; an --env value contains '%' "
                              "(use --launcher ssh)")
    template = node_argv(ctx, agent, "%n", "%h", len(nodes[0].ranks))  # what pdsh runs: it fills in %n, %h
    ssh_args = " ".join(ssh_options(ctx.ssh_port, ctx.ssh_key))
    argv = ["env", "PDSH_RCMD_TYPE=ssh", f"PDSH_SSH_ARGS_APPEND={ssh_args}", "pdsh", "-S", "-f", "1024",
            "-w", ",".join(ctx.names), remote_command(nodes[0].cwd, env, template)]
    agents = node_agents(nodes)
    return make_plan(ctx, "pdsh", nodes, [one_command("pdsh", argv, agents)], agents,
                     remote_shell=remote_shell(ctx))
