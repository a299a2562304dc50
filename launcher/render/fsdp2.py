"""Strategy → the settings the payload hands to torch FSDP2 (``fully_shard``) and DTensor tensor parallelism."""

from __future__ import annotations

import dataclasses

from ..errors import RenderError
from ..spec.models import ModelShape
from ..spec.strategy import FSDP, Strategy
from . import Cluster, RenderedConfig
from .batch import data_parallel_size, solve
from .common import training_block


def render(strategy: Strategy, cluster: Cluster, *, hf: bool = False) -> RenderedConfig:
    fsdp = strategy.fsdp or FSDP()
    if strategy.training.precision == "fp16":
        raise RenderError("fsdp2 trains in bf16 or fp32: fp16 needs a sharded gradient scaler this engine does "
                          "not run; set training.precision=bf16")
    dp = data_parallel_size(cluster.world_size, fsdp.tp, "fsdp.tp")
    batch = solve(strategy.training, dp)
    config = {
        "engine": strategy.engine,
        "fsdp": dataclasses.asdict(fsdp),  # the mesh: (training.data_parallel_size, fsdp.tp)
        "training": training_block(strategy, batch, cluster.world_size),
    }
    return RenderedConfig(strategy, cluster, config, dp)


def check_model(rendered: RenderedConfig, model: ModelShape) -> None:
    """Tensor parallelism splits heads, KV heads and the MLP across ``fsdp.tp`` ranks: each must divide."""
    tp = rendered.config["fsdp"]["tp"]
    for what, size in (("attention heads", model.heads), ("KV heads", model.kv_heads), ("MLP size", model.ffn)):
        if size % tp:
            raise RenderError(f"fsdp.tp {tp} does not divide model {model.name}'s {size} {what}")
