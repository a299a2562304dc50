"""One training engine per runtime: torch DDP, DeepSpeed, DeepSpeed pipeline, Horovod.

Every engine offers the same small surface to the loop:
``train_step(step) -> loss``, ``save(dir, step)``, ``load(dir) -> step``, ``digest()``, ``lr()``.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import torch


class Engine(Protocol):
    data_parallel_rank: int
    module: torch.nn.Module  # the model (this rank's stages, for pipelines) without engine wrappers
    identical_replicas: bool  # False where ranks legitimately hold different parameters (pipeline stages)

    def train_step(self, step: int) -> float: ...
    def save(self, directory: str, step: int) -> None: ...
    def load(self, directory: str) -> int: ...
    def digest(self) -> str: ...
    def lr(self) -> float: ...
    def close(self) -> None: ...


def params_digest(named_params) -> str:
    """A short hash of parameter values (fp32 bytes, in name order): equal digests, equal weights."""
    h = hashlib.sha256()
    for name, param in sorted(named_params, key=lambda item: item[0]):
        h.update(name.encode())
        h.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def create(engine: str, config: dict, model: torch.nn.Module, context) -> Engine:
    if engine == "ddp":
        from .ddp import DDPEngine

        return DDPEngine(config, model, context)
    if engine == "deepspeed" and "pipeline" in config:
        from .pipeline import PipelineEngine

        return PipelineEngine(config, model, context)
    if engine == "deepspeed":
        from .deepspeed import DeepSpeedEngine

        return DeepSpeedEngine(config, model, context)
    if engine == "horovod":
        from .horovod import HorovodEngine

        return HorovodEngine(config, model, context)
    raise SystemExit(f"launchdeck: error: engine '{engine}' is not supported by the payload yet")
