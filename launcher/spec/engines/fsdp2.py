"""torch FSDP2 (``fully_shard``): torch-native sharding of parameters, gradients and optimizer states, with
CPU offload and DTensor tensor parallelism on a 2-D (dp, tp) mesh."""

from __future__ import annotations

from ..strategy import FSDP
from . import EngineSpec

SPEC = EngineSpec(
    name="fsdp2",
    description="torch FSDP2 fully_shard (per layer + root), offload, 2-D FSDP x tensor parallel",
    renderer="launcher.render.fsdp2:render",
    estimator="launcher.estimate.fsdp2:estimate",
    model_check="launcher.render.fsdp2:check_model",
    sections=frozenset({"fsdp"}),
    defaults={"fsdp": FSDP()},
    payload="launcher.payload.train.engines.fsdp2",
    # with CPUOffloadPolicy the shards (and their clip norm, digest) live on the CPU: gloo beside NCCL there
    backends={"cpu": "gloo", "gpu": "cuda:nccl,cpu:gloo"},
)
