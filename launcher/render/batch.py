"""Batch arithmetic, solved and checked before anything starts: global = micro × accum × dp."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RenderError
from ..spec.strategy import Training


@dataclass(frozen=True)
class Batch:
    """The solved batch: micro batch × accumulation × data-parallel ranks = global batch."""

    micro: int
    accum: int
    data_parallel: int

    @property
    def global_(self) -> int:
        return self.micro * self.accum * self.data_parallel


def data_parallel_size(world_size: int, model_parallel: int = 1, knob: str = "pipeline.stages") -> int:
    """Ranks that hold distinct data: the world divided by the model-parallel degree ``knob`` sets (pipeline
    stages, tensor-parallel ranks)."""
    if model_parallel > world_size:
        raise RenderError(f"{knob} {model_parallel} needs at least {model_parallel} ranks; "
                          f"world size is {world_size}")
    if world_size % model_parallel:
        raise RenderError(f"world size {world_size} is not divisible by {knob} {model_parallel} "
                          f"({world_size} % {model_parallel} = {world_size % model_parallel})")
    return world_size // model_parallel


def solve(training: Training, data_parallel: int) -> Batch:
    """Solve grad_accum from global_batch when given; check that the three numbers agree."""
    micro, accum, wanted = training.micro_batch, training.grad_accum, training.global_batch
    if wanted is None:
        return Batch(micro, accum or 1, data_parallel)
    per_step = micro * data_parallel
    if wanted % per_step:
        raise RenderError(
            f"training.global_batch {wanted} is not divisible by micro_batch {micro} × data-parallel size "
            f"{data_parallel} = {per_step} ({wanted} / {per_step} = {wanted / per_step:g})")
    solved = wanted // per_step
    if accum is not None and accum != solved:
        raise RenderError(
            f"training.global_batch {wanted} != micro_batch {micro} × grad_accum {accum} × data-parallel size "
            f"{data_parallel} = {micro * accum * data_parallel}; set only one of global_batch and grad_accum")
    return Batch(micro, solved, data_parallel)
