"""Strategy → Horovod settings: horovodrun flags, the matching HOROVOD_* env, optimizer wrapper."""

from __future__ import annotations

from ..spec.strategy import Horovod, Strategy
from . import Cluster, RenderedConfig
from .batch import solve
from .common import training_block

_OPS = {"average": "Average", "adasum": "Adasum", "sum": "Sum"}


def render(strategy: Strategy, cluster: Cluster, *, hf: bool = False) -> RenderedConfig:
    h = strategy.horovod or Horovod()
    batch = solve(strategy.training, cluster.world_size)
    config = {
        "engine": strategy.engine,
        "horovodrun": horovodrun_args(h, cluster),
        "env": horovod_env(h),
        "optimizer_wrapper": {
            "compression": h.compression,
            "op": _OPS[h.op],
            "backward_passes_per_step": batch.accum,
            "gradient_predivide_factor": h.gradient_predivide_factor,
        },
        "training": training_block(strategy, batch, cluster.world_size),
    }
    return RenderedConfig(strategy, cluster, config, batch.data_parallel)


def horovodrun_args(h: Horovod, cluster: Cluster) -> list[str]:
    """Flags for horovodrun (hosts, interfaces and ssh come from the launch plan, not from here)."""
    args = ["-np", str(cluster.world_size), f"--{h.controller}",
            "--fusion-threshold-mb", str(h.fusion_threshold_mb),
            "--cycle-time-ms", f"{h.cycle_time_ms:g}",
            "--cache-capacity", str(h.cache_capacity)]
    if h.hierarchical_allreduce:
        args.append("--hierarchical-allreduce")
    if h.hierarchical_allgather:
        args.append("--hierarchical-allgather")
    return args


def horovod_env(h: Horovod) -> dict[str, str]:
    """The same settings as environment variables, for runs started without horovodrun flags."""
    return {
        "HOROVOD_FUSION_THRESHOLD": str(h.fusion_threshold_mb * 1024 * 1024),
        "HOROVOD_CYCLE_TIME": f"{h.cycle_time_ms:g}",
        "HOROVOD_CACHE_CAPACITY": str(h.cache_capacity),
        "HOROVOD_HIERARCHICAL_ALLREDUCE": str(int(h.hierarchical_allreduce)),
        "HOROVOD_HIERARCHICAL_ALLGATHER": str(int(h.hierarchical_allgather)),
    }
