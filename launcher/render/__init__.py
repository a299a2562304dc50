"""Pure rendering: ``Strategy × Cluster → RenderedConfig``. No I/O, no processes, no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..errors import RenderError
from ..spec import engines
from ..spec.strategy import Strategy
from .batch import solve


@dataclass(frozen=True)
class Cluster:
    """The shape a config is rendered for."""

    world_size: int
    gpus_per_node: int | None = None  # default: min(world_size, 8)
    accelerator: Literal["gpu", "cpu"] = "gpu"

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise RenderError(f"world size must be >= 1, got {self.world_size}")
        if self.gpus_per_node is not None and self.gpus_per_node < 1:
            raise RenderError(f"gpus per node must be >= 1, got {self.gpus_per_node}")

    @property
    def ranks_per_node(self) -> int:
        """Ranks sharing a node: the node size, or the whole world when it fits in one node."""
        return min(self.gpus_per_node or 8, self.world_size)


@dataclass(frozen=True)
class RenderedConfig:
    """What an engine needs: ``config`` is the file written to disk (DeepSpeed JSON or settings)."""

    strategy: Strategy
    cluster: Cluster
    config: dict[str, Any]
    data_parallel_size: int

    @property
    def engine(self) -> str:
        return self.strategy.engine

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step across every rank, as solved for this world size."""
        return solve(self.strategy.training, self.data_parallel_size).global_


def render(strategy: Strategy, cluster: Cluster, *, hf: bool = False) -> RenderedConfig:
    """Render ``strategy`` for ``cluster`` with its engine's renderer (from the engine registry)."""
    spec = engines.get(strategy.engine)
    if hf and not spec.hf_flavour:
        raise RenderError(f"--hf renders DeepSpeed configs; '{strategy.name}' uses engine {strategy.engine}")
    if hf and strategy.pipeline:
        raise RenderError(f"--hf: the Hugging Face Trainer does not run DeepSpeed pipeline parallelism "
                          f"('{strategy.name}' has {strategy.pipeline.stages} pipeline stages)")
    if cluster.accelerator == "cpu" and strategy.training.precision == "fp16":
        raise RenderError("training.precision fp16 is not supported on CPU (DeepSpeed and torch autocast refuse "
                          "it); use bf16 or fp32")
    return spec.load("renderer")(strategy, cluster, hf=hf)


def check(rendered: RenderedConfig) -> None:
    """The engine's own config parser accepts ``rendered`` (engines without one: nothing to check).

    Raises :class:`~launcher.errors.ConfigCheckError`. DeepSpeed's parser imports deepspeed (≈2 s)."""
    spec = engines.get(rendered.engine)
    if spec.checker:
        spec.load("checker")(rendered)
