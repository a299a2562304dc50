"""Per-rank memory of a rendered strategy for a model: ``RenderedConfig × Workload → Estimate``. No torch.

Each engine's estimator (named by the engine registry's ``estimator``) counts what its engine allocates,
from the rendered config (ZeRO stage, bucket sizes, offload, precision, recompute) and the model's shapes,
in three phases of a step: what stays **resident** (parameters, master weights, optimizer states, flat
buffers made at start-up), what is alive **as backward starts** (every saved activation, the loss's
gradient, gradient buckets), and what is alive **at the optimizer step** (gradient partitions, the step's
temporaries). The peak is the resident part plus the larger of the other two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..errors import StrategyError
from ..render import RenderedConfig
from ..spec import engines
from ..spec.models import ModelShape

MAX_MICRO_BATCH = 1 << 16  # the search for the largest micro batch that fits stops here


@dataclass(frozen=True)
class Workload:
    """What each rank trains: the model, its micro batch and sequence length, on GPUs or on CPU ranks."""

    model: ModelShape
    micro_batch: int
    seq_len: int
    cpu: bool = False  # CPU ranks: offloaded state shares the rank's memory; no fused optimizer kernels

    def __post_init__(self) -> None:
        if self.micro_batch < 1 or self.seq_len < 1:
            raise StrategyError(f"micro batch and sequence length must be >= 1 (got {self.micro_batch}, "
                                f"{self.seq_len})")
        if self.model.positions and self.seq_len > self.model.positions:
            raise StrategyError(f"{self.model.name}: sequence length {self.seq_len} is longer than its "
                                f"{self.model.positions} learned positions")

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.seq_len


@dataclass(frozen=True)
class Breakdown:
    """One rank's memory in bytes: the parts of a training step and its peak; offload is per rank too."""

    params: int
    grads: int  # as the optimizer steps
    optimizer: int  # states and fp32 master weights
    activations: int  # saved for backward, one micro batch (in-flight ones for pipeline stages)
    buffers: int  # communication buckets, gathered parameters
    temporaries: int  # the loss's gradient, the optimizer step's scratch
    peak: int
    offload_cpu: int = 0  # host RAM this rank's offloaded state takes
    offload_nvme: int = 0

    @property
    def model_states(self) -> int:
        return self.params + self.grads + self.optimizer

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def phased(params: int, grads: int, optimizer: int, activations: int, buffers: int, temporaries: int, *,
           resident: int, backward: int, step: int, offload_cpu: int = 0, offload_nvme: int = 0) -> Breakdown:
    """A :class:`Breakdown` whose peak is ``resident + max(backward, step)`` (see the module docstring)."""
    return Breakdown(params=params, grads=grads, optimizer=optimizer, activations=activations, buffers=buffers,
                     temporaries=temporaries, peak=resident + max(backward, step), offload_cpu=offload_cpu,
                     offload_nvme=offload_nvme)


@dataclass(frozen=True)
class Estimate:
    """The estimate for one strategy: its shape, one rank's breakdown and, given a GPU's memory, the verdict."""

    strategy: str
    engine: str
    world_size: int
    gpus_per_node: int
    data_parallel_size: int
    workload: Workload
    per_rank: Breakdown
    gpu_memory: int | None = None
    max_micro_batch: int | None = None

    @property
    def fits(self) -> bool | None:
        return None if self.gpu_memory is None else self.per_rank.peak <= self.gpu_memory

    def to_json(self) -> dict:
        w = self.workload
        data = {"strategy": self.strategy, "engine": self.engine, "model": w.model.name,
                "params_total": w.model.params(), "world_size": self.world_size, "gpus_per_node": self.gpus_per_node,
                "data_parallel_size": self.data_parallel_size, "micro_batch": w.micro_batch, "seq_len": w.seq_len,
                "device": "cpu" if w.cpu else "gpu", "per_rank": self.per_rank.to_json(),
                "offload_per_node": {"cpu": self.per_rank.offload_cpu * self.gpus_per_node,
                                     "nvme": self.per_rank.offload_nvme * self.gpus_per_node},
                "max_micro_batch": self.max_micro_batch}
        if self.gpu_memory is not None:
            data.update(gpu_memory=self.gpu_memory, fits=self.fits)
        return data


def per_rank(rendered: RenderedConfig, workload: Workload) -> Breakdown:
    """One rank's breakdown, from the engine's own estimator (the registry's ``estimator``)."""
    spec = engines.get(rendered.engine)
    if spec.estimator is None:
        raise StrategyError(f"engine {rendered.engine} has no memory estimator")
    return spec.load("estimator")(rendered, workload)


def estimate(rendered: RenderedConfig, workload: Workload, gpu_memory: int | None = None) -> Estimate:
    """The estimate of ``rendered`` for ``workload``; with ``gpu_memory``, the verdict and the largest micro batch."""
    largest = max_micro_batch(rendered, workload, gpu_memory) if gpu_memory is not None else None
    return Estimate(strategy=rendered.strategy.name, engine=rendered.engine,
                    world_size=rendered.cluster.world_size, gpus_per_node=rendered.cluster.ranks_per_node,
                    data_parallel_size=rendered.data_parallel_size, workload=workload,
                    per_rank=per_rank(rendered, workload), gpu_memory=gpu_memory, max_micro_batch=largest)


def max_micro_batch(rendered: RenderedConfig, workload: Workload, gpu_memory: int) -> int | None:
    """The largest micro batch whose peak fits in ``gpu_memory`` (None: not even 1; ``MAX_MICRO_BATCH`` where
    the search stops); the peak never shrinks as the micro batch grows."""
    def fits(batch: int) -> bool:
        return per_rank(rendered, replace(workload, micro_batch=batch)).peak <= gpu_memory

    if not fits(1):
        return None
    low, high = 1, 2
    while fits(high):
        if high >= MAX_MICRO_BATCH:
            return high
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low
