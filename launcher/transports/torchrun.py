"""torchrun per node, for places without ssh (Kubernetes, a scheduler): the plan only prints commands."""

from __future__ import annotations

from ..plan import LaunchPlan
from .common import ClusterContext
from .ssh import _nodes, _plan


def plan_torchrun(ctx: ClusterContext) -> LaunchPlan:
    """Each node runs its own line (with its --node-rank); launchdeck starts nothing here."""
    return _plan(ctx, "torchrun", _nodes(ctx, lambda index: index), [])
