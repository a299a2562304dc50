"""One training engine per runtime: torch DDP, DeepSpeed, DeepSpeed pipeline, Horovod.

Every engine offers the same small surface to the loop:
``train_step(step) -> loss``, ``save(dir, step)``, ``load(dir) -> step``, ``digest()``, ``lr()``; every engine
module (named by the engine registry) offers ``connect``, ``shape``, ``at_world``, ``resumable`` and ``create``
(:class:`EngineModule`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from ....spec import engines as registry
from ....spec.engines import EngineSpec
from ..comm import Comm
from ..resume import Saved
from ..runtime import Runtime


class Engine(Protocol):
    """What the loop drives: one training step, checkpoints, a parameter digest, the LR, release."""

    data_parallel_rank: int
    data_parallel_size: int
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


@dataclass(frozen=True)
class TrainShape:
    """What the loop needs from an engine's rendered config: its micro batch, global batch, recompute."""

    micro_batch: int
    global_batch: int
    activation_checkpointing: bool


class EngineModule(Protocol):
    """A payload engine module (named by the engine registry's ``payload``): how to join the job, read the
    rendered config, and build the engine."""

    def connect(self, rt: Runtime) -> Comm: ...
    def shape(self, config: dict) -> TrainShape: ...
    def at_world(self, config: dict, world_size: int) -> dict: ...
    def resumable(self, config: dict, checkpoint: Path, saved: Saved | None, rt: Runtime, comm: Comm) -> dict: ...
    def create(self, config: dict, model: torch.nn.Module, context) -> Engine: ...


def load(name: str) -> tuple[EngineSpec, EngineModule]:
    """The registry entry of engine ``name`` and its payload module."""
    spec = registry.get(name)
    if spec.payload is None:
        raise SystemExit(f"launchdeck: error: engine '{name}' has no payload; run your own script")
    return spec, spec.load("payload")


def data_parallel_at(world_size: int, model_parallel: int, what: str) -> int:
    """Data-parallel ranks at ``world_size`` (an elastic restart changed it) when ``model_parallel`` ranks split
    the model (pipeline stages, tensor parallelism): it must divide the world."""
    if world_size < model_parallel or world_size % model_parallel:
        raise SystemExit(f"launchdeck: error: {world_size} rank(s) cannot keep {what} {model_parallel}: the world "
                         "size must be a multiple of it")
    return world_size // model_parallel


def accum_for(global_batch: int, micro_batch: int, data_parallel: int) -> int:
    """grad_accum that keeps ``global_batch`` at ``data_parallel`` ranks (an elastic restart changed the world)."""
    per_step = micro_batch * data_parallel
    if global_batch % per_step:
        raise SystemExit(f"launchdeck: error: the global batch {global_batch} cannot be kept at data-parallel size "
                         f"{data_parallel}: it is not divisible by micro batch {micro_batch} × {data_parallel}")
    return global_batch // per_step


def training_at_world(config: dict, world_size: int) -> dict:
    """``at_world`` for the engine-neutral training block (ddp, horovod): every rank holds distinct data."""
    t = config["training"]
    if t["world_size"] == world_size:
        return config
    accum = accum_for(t["global_batch"], t["micro_batch"], world_size)
    return {**config, "training": {**t, "grad_accum": accum, "world_size": world_size,
                                   "data_parallel_size": world_size}}


def loads_anywhere(config: dict, *_: object) -> dict:
    """``resumable`` for engines whose checkpoint is one full state: it loads at any world size as it is."""
    return config


def training_shape(config: dict) -> TrainShape:
    """The engine-neutral ``training`` block that the ddp and horovod renderers write."""
    t = config["training"]
    return TrainShape(t["micro_batch"], t["global_batch"], t["activation_checkpointing"])
