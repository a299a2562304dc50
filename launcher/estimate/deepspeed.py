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
- AutoTP (ZeRO 0-2): each rank holds 1/tp of the decoder projections and of the head, everything else whole;
  ZeRO partitions that share over the data-parallel ranks (world / tp). Activations are counted whole.
- Pipelines: each stage's share of the model (balanced by parameters; the last holds the LM head, tied
  or not), the micro batches a 1F1B schedule keeps in flight there, ZeRO-1 across the replicas of a
  stage; the heaviest stage is the answer.

Where this departs from the ZeRO paper's 2Ψ+2Ψ+12Ψ (16Ψ, 4Ψ+12Ψ/N, 2Ψ+14Ψ/N, 16Ψ/N): the 16-bit weights
stay whole until ZeRO-3; gradients reach the step as an fp32 partition on top of the 16-bit one; the
buckets are sized in elements by the config, not by the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import StrategyError
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
    activations = Activations.of(work, mode_of(setup.precision, True), setup.checkpointing)
    if setup.stage == 3:
        return _stage3(setup, work, activations)
    psi = _tensor_parallel_share(work.model, int(rendered.config.get("tensor_parallel", {}).get("autotp_size", 1)))
    return _stage12(setup, work, psi, activations.total(), activations.loss_backward())


def _tensor_parallel_share(m: ModelShape, tp: int) -> int:
    """Parameters one AutoTP rank holds: its 1/tp of every decoder projection and of the head (the model's
    tp_plan splits them), the norms and embeddings whole. ZeRO then partitions this share over dp."""
    split = m.layers * (m.layer_params() - 2 * m.norm_params) + m.vocab * m.hidden * (not m.tied)
    return m.params() - split + split // tp


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
    if setup.stage == 0:  # DeepSpeed's BF16/FP16 optimizer: fp32 gradients kept whole, no buckets
        return phased(*parts, resident=params + optimizer + grads, backward=backward, step=0)
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
    if setup.stage == 0:
        return 0
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
    persistent = sum(t for t in m.tensors() if t <= threshold)  # partition_parameters.py: ds_numel <= threshold
    partition = p * math.ceil(psi / n)
    gathered = p * _in_flight(m, zero, persistent)
    optimizer, grads = ADAM_AND_MASTER * psi // n, 4 * psi // n
    bucket = p * int(float(zero.get("reduce_bucket_size", 5e8)))
    secondary = _secondary(zero, p, psi - persistent, n)
    acts, loss_backward = activations.total(), activations.loss_backward()
    # offload_optimizer: the reduced fp32 gradients and the master's own gradient buffer both stay in host RAM
    # (stage3.py: grad_partitions_flat_buffer pinned, initialize_optimizer_states' subgroup_gradient_buffer)
    staging = grads if setup.offload("optimizer") != "none" else 0
    moved = {what for what in ("optimizer", "param") if setup.offload(what) != "none" and not work.cpu}
    host = []  # optimizer states go where offload_optimizer says, fp32 gradients to host RAM
    if "optimizer" in moved:
        host += [_host(setup.offload("optimizer"), optimizer), {"offload_cpu": grads + staging}]
        optimizer = grads = staging = 0  # the parts say what the GPU holds
    if "param" in moved:
        host.append(_host(setup.offload("param"), partition))
        partition = 0
    params = p * persistent + partition + secondary
    offload = _merge(host)
    return phased(params, grads, optimizer, acts, bucket + gathered, loss_backward,
                  resident=params + optimizer + grads + staging + bucket, backward=acts + loss_backward + gathered,
                  step=0,
                  **offload)


def _merge(parts: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for part in parts:
        for key, size in part.items():
            merged[key] = merged.get(key, 0) + size
    return merged


def _secondary(zero: dict, p: int, partitioned: int, dp: int) -> int:
    """ZeRO++ hpZ: a second partition of the 16-bit weights within each group of ``zero_hpz_partition_size``
    ranks (a node), so backward gathers them over the node's fast links; none when the group is the whole
    data-parallel world (one node: the primary partition already is that)."""
    group = int(zero.get("zero_hpz_partition_size", 1))
    return p * math.ceil(partitioned / group) if 1 < group < dp else 0


def _in_flight(m: ModelShape, zero: dict, persistent: int) -> int:
    """Parameters ZeRO-3 holds gathered at once: the prefetch bucket plus the largest module being computed,
    capped by ``stage3_max_live_parameters``; none beyond the persistent ones when everything persists."""
    if persistent >= m.params():
        return 0
    prefetch = float(zero.get("stage3_prefetch_bucket_size", 5e7))
    live = float(zero.get("stage3_max_live_parameters", 1e9))
    module = max(m.layer_params(), m.largest_tensor())  # the embeddings or the head can outweigh a layer
    return int(min(prefetch + module, live, m.params() - persistent))


def _pipeline(pipeline: dict, setup: _Setup, work: Workload) -> Breakdown:
    """The heaviest stage: layers split into contiguous stages of balanced parameters (DeepSpeed's
    ``partition_method: parameters``); under 1F1B stage i keeps min(stages - i, micro batches) in flight."""
    m, stages = work.model, int(pipeline.get("stages", 2))
    mode = mode_of(setup.precision, True)
    interval = int(pipeline.get("activation_checkpoint_interval", 0))
    act = Activations.of(work, mode, interval > 0)
    sizes = [m.embedding_params(), *[m.layer_params()] * m.layers, m.norm_params + m.vocab * m.hidden]
    breakdowns = []
    for index, (first, last) in enumerate(balanced(sizes, stages)):
        layers = min(last, m.layers) - max(first, 1) + 1  # decoder layers in pieces first..last
        in_flight = min(stages - index, setup.accum)
        is_last = last == len(sizes) - 1
        activations = act.stored(layers, in_flight) + (act.head() if is_last else 0)
        loss_backward = act.loss_backward() if is_last else 0
        breakdowns.append(_stage12(setup, work, sum(sizes[first:last + 1]), activations, loss_backward))
    return max(breakdowns, key=lambda b: b.peak)


def balanced(sizes: list[int], parts: int) -> list[tuple[int, int]]:
    """Contiguous (first, last) index ranges of ``sizes`` in ``parts`` non-empty groups whose largest sum
    is the smallest possible (the objective of DeepSpeed's ``partition_balanced``)."""
    if parts > len(sizes):
        raise StrategyError(f"{parts} pipeline stages but the model has only {len(sizes)} pieces to split")
    low, high = max(sizes), sum(sizes)
    while low < high:  # the smallest capacity that fits in ``parts`` groups
        middle = (low + high) // 2
        low, high = (low, middle) if len(_groups(sizes, middle)) <= parts else (middle + 1, high)
    groups = _groups(sizes, low)
    while len(groups) < parts:  # split the widest group until every stage has a piece
        widest = max(range(len(groups)), key=lambda i: groups[i][1] - groups[i][0])
        first, last = groups[widest]
        groups[widest:widest + 1] = [(first, first), (first + 1, last)]
    return groups


def _groups(sizes: list[int], capacity: int) -> list[tuple[int, int]]:
    groups, first, total = [], 0, 0
    for index, size in enumerate(sizes):
        if total + size > capacity and index > first:
            groups.append((first, index - 1))
            first, total = index, 0
        total += size
    return [*groups, (first, len(sizes) - 1)]
