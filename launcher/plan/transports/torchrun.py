"""torchrun per node, for places without ssh (Kubernetes, a scheduler): the plan only prints commands.

With --max-restarts the nodes meet through c10d (``--nnodes MIN:MAX``) and torchrun owns the restarts: a node
restarted by its scheduler rejoins, and the payload resumes from the run's latest checkpoint by itself.
"""

from __future__ import annotations

import dataclasses

from ..model import LaunchPlan
from .common import ClusterContext, make_plan, torchrun_nodes

# A restarted worker group sharing the rendezvous store reads the previous group's keys (restart counts differ
# per agent): gloo's connectFullMesh is refused or hangs, 4 of 5 tries here (pytorch #135712). Off, each round
# gets a store of its own: 9 of 9 here, one agent or two.
ELASTIC_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def plan_torchrun(ctx: ClusterContext) -> LaunchPlan:
    """Each node runs its own line (with its --node-rank, or c10d with restarts); launchdeck starts nothing."""
    if ctx.max_restarts:
        ctx = dataclasses.replace(ctx, elastic=True, env={**ctx.env, **ELASTIC_ENV})
    return make_plan(ctx, "torchrun", torchrun_nodes(ctx), [], agents={})
