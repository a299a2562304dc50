"""Ray: one Ray worker per rank on an existing cluster, placed by Ray (``--launcher ray --ray-address``).

The plan's one local command is the Ray driver (:mod:`launcher.raycluster.driver`); what each rank runs (its
agent around the payload or the user's script), with which env and resources, travels in ``ray-job.json`` in
the run record. Where a rank runs is Ray's decision, made when the job starts: the plan names no host for it
(:data:`~launcher.plan.model.PLACED_BY_CLUSTER`), and each agent says where it is when it starts.
"""

from __future__ import annotations

import dataclasses
import os

from ... import entrypoints
from ...node import events
from ...raycluster.job import FILE, RayJob
from ..model import PLACED_BY_CLUSTER, Command, LaunchPlan, NodePlan
from .common import ClusterContext, agent_argv, make_plan, python


def ray_job(ctx: ClusterContext) -> RayJob:
    env = {**ctx.env, **ctx.extra.get("engine_env", {})}  # type: ignore[dict-item]
    return RayJob(address=ctx.ray_address or "auto", world_size=ctx.world_size, runner=ctx.ray_runner,
                  cpus_per_worker=1.0, gpus_per_worker=0.0 if ctx.cpu else 1.0,
                  agent=agent_argv(ctx, "--per-rank")[:-1], command=[python(), "-u", *ctx.command],
                  cwd=os.getcwd(), run_dir=ctx.run_dir, env=env, network_interface=ctx.network_interface)


def plan_ray(ctx: ClusterContext) -> LaunchPlan:
    job = ray_job(ctx)
    node = NodePlan(PLACED_BY_CLUSTER, [*job.agent, "--", *job.command], job.cwd, python(), job.env,
                    list(range(ctx.world_size)))
    agents = {events.rank_id(rank): PLACED_BY_CLUSTER for rank in node.ranks}
    path = os.path.join(ctx.run_dir, FILE)
    command = Command("ray", [python(), "-m", entrypoints.RAY_DRIVER, path], job.cwd, agents=list(agents))
    plan = make_plan(ctx, "ray", [node], [command], agents, files={path: job.to_json()},
                     cluster_check=[python(), "-m", entrypoints.RAY_CHECK, path])
    return dataclasses.replace(plan, master_addr=PLACED_BY_CLUSTER, master_port=0)  # rank 0's worker picks it
