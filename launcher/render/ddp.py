"""Strategy → the settings the payload hands to torch's DistributedDataParallel."""

from __future__ import annotations

import dataclasses

from ..spec.strategy import DDP, Strategy
from . import Cluster, RenderedConfig
from .batch import solve
from .common import training_block


def render(strategy: Strategy, cluster: Cluster, *, hf: bool = False) -> RenderedConfig:
    batch = solve(strategy.training, cluster.world_size)
    config = {
        "engine": strategy.engine,
        "ddp": dataclasses.asdict(strategy.ddp or DDP()),
        "training": training_block(strategy, batch, cluster.world_size),
    }
    if strategy.compression:
        config["compression"] = dataclasses.asdict(strategy.compression)
    return RenderedConfig(strategy, cluster, config, batch.data_parallel)
