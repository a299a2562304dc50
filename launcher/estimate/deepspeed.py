"""DeepSpeed's memory, read from its rendered JSON: ZeRO 0-3, offload, pipeline stages.

Ψ parameters, N data-parallel ranks, p bytes per 16-bit (or fp32) weight. What DeepSpeed 0.19 allocates:

- ZeRO-1/2 (``stage_1_and_2.py``): the 16-bit weights whole (pΨ); an fp32 master partition and two Adam
  moments (12Ψ/N); with ``contiguous_gradients`` a gradient bucket of ``reduce_bucket_size`` elements during
  backward, two with ``overlap_comm`` — whatever the model's size; the 16-bit gradient partition (pΨ/N);
  at the step, the fp32 gradient partition (4Ψ/N).
- ZeRO-3 (``stage3.py``): the 16-bit partition (pΨ/N) plus whole copies of the tensors under
  ``stage3_param_persistence_threshold`` (and, with ZeRO++ hpZ, a second partition per node); a flat fp32
  gradient partition (4Ψ/N) and one bucket of
  ``reduce_bucket_size`` elements, both made at start-up; during forward and backward, the gathered
  parameters in flight (the prefetch bucket plus the module being computed).
- Offload moves the master weights, moments and fp32 gradients (optimizer) or the weight partitions
  (parameters) to host RAM or NVMe; on CPU ranks host RAM is the rank's own memory, so they stay counted.
- Pipelines: the largest stage's share of the model, the micro batches a 1F1B schedule keeps in flight on
  its first stage (one per stage), ZeRO-1 across the replicas of a stage.

Where this departs from the ZeRO paper's 2Ψ+2Ψ+12Ψ (16Ψ, 4Ψ+12Ψ/N, 2Ψ+14Ψ/N, 16Ψ/N): the 16-bit weights
stay whole until ZeRO-3; gradients reach the step as an fp32 partition on top of the 16-bit one; the
buckets are sized in elements by the config, not by the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..render import RenderedConfig
from ..spec.models import ModelShape
from . import Breakdown, Workload, phased
from .activations import Activations, mode_of

ADAM_AND_MASTER = 12  # fp32 master weight + two fp32 moments, bytes per parameter


@dataclass(frozen=True)
class _Setup:
    """What the rendered JSON says about one rank's memory."""

    stage: int
    dp: int  # data-parallel ranks the states are partitioned over
    weight_bytes: int
    zero: dict
    checkpointing: bool
    precision: str
    accum: int  # micro batches per step

    @property
    def shards(self) -> int:
        return self.dp if self.stage >= 1 else 1

    def offload(self, what: str) -> str:
        return (self.zero.get(f"offload_{what}") or {}).get("device", "none")


def estimate(rendered: RenderedConfig, work: Workload) -> Breakdown:
    """One rank's memory under DeepSpeed (a pipeline stage's, when the config has a pipeline)."""
    setup = _setup(rendered)
    if "pipeline" in rendered.config:
        return _pipeline(rendered.config["pipeline"], setup, work)
    activations = Activations(work.model, work.tokens, mode_of(setup.precision, True), setup.checkpointing)
    if setup.stage == 3:
        return _stage3(setup, work, activations)
    return _stage12(setup, work, work.model.params(), activations.total(), activations.loss_backward())


def _setup(rendered: RenderedConfig) -> _Setup:
    config = rendered.config
    zero = config.get("zero_optimization") or {}
    precision = "bf16" if (config.get("bf16") or {}).get("enabled") else \
        "fp16" if (config.get("fp16") or {}).get("enabled") else "fp32"
    return _Setup(stage=int(zero.get("stage", 0)), dp=rendered.data_parallel_size,
                  weight_bytes=4 if precision == "fp32" else 2, zero=zero,
                  checkpointing="activation_checkpointing" in config, precision=precision,
                  accum=int(config.get("gradient_accumulation_steps", 1)))


def _stage12(setup: _Setup, work: Workload, psi: int, activations: int, loss_backward: int) -> Breakdown:
    """ZeRO-0/1/2 over ``psi`` parameters (a pipeline stage's, for pipelines)."""
    p, shard = setup.weight_bytes, setup.shards
    params = p * psi
    optimizer = ADAM_AND_MASTER * psi // shard
    grads = 4 * psi // shard  # the fp32 gradient partition the optimizer steps
    grad16 = p * psi // shard  # the reduced 16-bit gradient partition, made late in backward
    buckets = _reduce_buckets(setup, psi)
    parts = (params, grads, optimizer, activations, buckets, loss_backward)
    backward = activations + loss_backward + buckets
    if setup.offload("optimizer") == "none":
        return phased(*parts, resident=params + optimizer, backward=backward, step=grad16 + grads)
    # offload: the fp32 gradient partition and a 16-bit staging copy of the weights live beside the
    # optimizer on the host from start-up (stage_1_and_2.py: param_buffer_of_bit16_for_cpu_offload_groups)
    staging = grads + p * psi // shard
    if work.cpu:  # the host is the rank's own memory
        return phased(*parts, resident=params + optimizer + staging, backward=backward, step=grad16)
    on_device = (params, 0, 0, activations, buckets, loss_backward)  # the parts say what the GPU holds
    offload = _merge([_host(setup.offload("optimizer"), optimizer), {"offload_cpu": staging}])
    return phased(*on_device, resident=params, backward=backward, step=grad16, **offload)


def _reduce_buckets(setup: _Setup, psi: int) -> int:
    """ZeRO-1/2's gradient buckets in backward: ``reduce_bucket_size`` elements each (or the gradients whole)."""
    if not setup.zero.get("contiguous_gradients", True):
        return setup.weight_bytes * psi
    copies = 2 if setup.zero.get("overlap_comm", False) else 1
    return copies * setup.weight_bytes * int(float(setup.zero.get("reduce_bucket_size", 5e8)))


def _host(device: str, size: int) -> dict[str, int]:
    """Offloaded bytes by where they go."""
    return {"offload_nvme": size} if device == "nvme" else {"offload_cpu": size}


def _stage3(setup: _Setup, work: Workload, activations: Activations) -> Breakdown:
    m, p, n, zero = work.model, setup.weight_bytes, setup.dp, setup.zero
    psi = m.params()
    threshold = float(zero.get("stage3_param_persistence_threshold", 1e5))
    persistent = sum(t for t in m.tensors() if t < threshold)
    partition = p * math.ceil(psi / n)
    gathered = p * _in_flight(m, zero, persistent)
    optimizer, grads = ADAM_AND_MASTER * psi // n, 4 * psi // n
    bucket = p * int(float(zero.get("reduce_bucket_size", 5e8)))
    secondary = _secondary(zero, p, psi - persistent)
    acts, loss_backward = activations.total(), activations.loss_backward()
    moved = {what for what in ("optimizer", "param") if setup.offload(what) != "none" and not work.cpu}
    host = []  # optimizer states go where offload_optimizer says, fp32 gradients to host RAM
    if "optimizer" in moved:
        host += [_host(setup.offload("optimizer"), optimizer), {"offload_cpu": grads}]
        optimizer = grads = 0  # the parts say what the GPU holds
    if "param" in moved:
        host.append(_host(setup.offload("param"), partition))
        partition = 0
    params = p * persistent + partition + secondary
    offload = _merge(host)
    return phased(params, grads, optimizer, acts, bucket + gathered, loss_backward,
                  resident=params + optimizer + grads + bucket, backward=acts + loss_backward + gathered, step=0,
                  **offload)


def _merge(parts: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for part in parts:
        for key, size in part.items():
            merged[key] = merged.get(key, 0) + size
    return merged


def _secondary(zero: dict, p: int, partitioned: int) -> int:
    """ZeRO++ hpZ: a second partition of the 16-bit weights within each group of ``zero_hpz_partition_size``
    ranks (a node), so backward gathers them over the node's fast links."""
    group = int(zero.get("zero_hpz_partition_size", 1))
    return p * math.ceil(partitioned / group) if group > 1 else 0


def _in_flight(m: ModelShape, zero: dict, persistent: int) -> int:
    """Parameters ZeRO-3 holds gathered at once: the prefetch bucket plus the largest module being computed,
    capped by ``stage3_max_live_parameters``; none beyond the persistent ones when everything persists."""
    if persistent >= m.params():
        return 0
    prefetch = float(zero.get("stage3_prefetch_bucket_size", 5e7))
    live = float(zero.get("stage3_max_live_parameters", 1e9))
    return int(min(prefetch + m.layer_params(), live, m.params() - persistent))


def _pipeline(pipeline: dict, setup: _Setup, work: Workload) -> Breakdown:
    """The heavier of the first stage (embeddings, most micro batches in flight) and the last (the loss)."""
    m, stages = work.model, int(pipeline.get("stages", 2))
    per_stage = math.ceil(m.layers / stages)
    mode = mode_of(setup.precision, True)
    act = Activations(m, work.tokens, mode, int(pipeline.get("activation_checkpoint_interval", 0)) > 0)
    first = _stage12(setup, work, m.embedding_params() + per_stage * m.layer_params(),
                     min(stages, setup.accum) * act.layers(per_stage), 0)
    last = _stage12(setup, work, per_stage * m.layer_params() + m.norm_params + m.head_params(),
                    act.layers(per_stage) + act.head(), act.loss_backward())
    return max(first, last, key=lambda b: b.peak)

