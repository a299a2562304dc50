"""torchrun per node, for places without ssh (Kubernetes, a scheduler): the plan only prints commands."""

from __future__ import annotations

from ..model import LaunchPlan
from .common import ClusterContext, make_plan, torchrun_nodes


def plan_torchrun(ctx: ClusterContext) -> LaunchPlan:
    """Each node runs its own line (with its --node-rank); launchdeck starts nothing here."""
    return make_plan(ctx, "torchrun", torchrun_nodes(ctx), [], agents={})
