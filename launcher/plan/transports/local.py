"""This machine only: one torchrun (torch's elastic agent) starting every local rank."""

from __future__ import annotations

from ..model import Command, LaunchPlan
from .common import ClusterContext, make_plan, torchrun_nodes


def plan_local(ctx: ClusterContext) -> LaunchPlan:
    """torchrun's own failure table names a failed rank: no agents, and the node's env set on the process."""
    (node,) = torchrun_nodes(ctx)
    command = Command("torchrun", node.argv, node.cwd, env=node.env)  # the node's env holds OUTPUT_ENV too
    return make_plan(ctx, "local", [node], [command], agents={})
