"""torchrun per node, for places without ssh (Kubernetes, a scheduler): the plan only prints commands.

With --max-restarts the nodes meet through c10d (``--nnodes MIN:MAX``) and torchrun owns the restarts: a node
restarted by its scheduler rejoins, and the payload resumes from the run's latest checkpoint by itself.
"""

from __future__ import annotations

import dataclasses

from ..model import LaunchPlan
from .common import ClusterContext, make_plan, torchrun_nodes


def plan_torchrun(ctx: ClusterContext) -> LaunchPlan:
    """Each node runs its own line (with its --node-rank, or c10d with restarts); launchdeck starts nothing."""
    ctx = dataclasses.replace(ctx, elastic=ctx.max_restarts > 0)
    return make_plan(ctx, "torchrun", torchrun_nodes(ctx), [], agents={})
