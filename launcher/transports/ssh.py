"""ssh and pdsh: one torchrun per host, started over ssh with an explicit env (no env files)."""

from __future__ import annotations

from ..errors import LaunchdeckError
from ..plan import LaunchPlan, NodePlan
from .common import ClusterContext, make_plan, remote_command, torchrun_nodes


def ssh_options(ctx: ClusterContext) -> list[str]:
    options = ["-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ServerAliveInterval=15"]
    if ctx.ssh_port:
        options += ["-p", str(ctx.ssh_port)]
    if ctx.ssh_key:
        options += ["-i", ctx.ssh_key]
    return options


def plan_ssh(ctx: ClusterContext) -> LaunchPlan:
    nodes = torchrun_nodes(ctx, lambda index: index)
    commands = [["ssh", *ssh_options(ctx), node.host, remote_command(node.cwd, node.env, node.argv)]
                for node in nodes]
    return make_plan(ctx, "ssh", nodes, commands)


def plan_pdsh(ctx: ClusterContext) -> LaunchPlan:
    """One pdsh for all hosts; pdsh replaces %n with each host's index (its node rank)."""
    if len({tuple(s) for s in ctx.slots.values()}) > 1:
        raise LaunchdeckError("--launcher pdsh runs one command on every host, so every host needs the same "
                              "slots; use --launcher ssh for uneven hosts")
    nodes = torchrun_nodes(ctx, lambda index: "%n")
    env = nodes[0].env
    if any("%" in v for v in env.values()):
        raise LaunchdeckError("pdsh rewrites %h/%u/%n inside commands; an --env value contains '%' "
                              "(use --launcher ssh)")
    ssh_args = " ".join(ssh_options(ctx))
    command = ["env", "PDSH_RCMD_TYPE=ssh", f"PDSH_SSH_ARGS_APPEND={ssh_args}", "pdsh", "-S", "-f", "1024",
               "-w", ",".join(ctx.names), remote_command(nodes[0].cwd, env, nodes[0].argv)]
    for index, node in enumerate(nodes):  # show each node's concrete rank in the plan
        nodes[index] = NodePlan(node.host, [a.replace("%n", str(index)) for a in node.argv], node.cwd,
                                node.interpreter, node.env, node.ranks)
    return make_plan(ctx, "pdsh", nodes, [command])
