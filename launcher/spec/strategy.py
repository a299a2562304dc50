"""The typed shape of a strategy: what ``strategies/*.yaml`` may say, with a description per knob.

Sections apply per engine: ``zero``/``pipeline``/``tensor_parallel``/``deepspeed`` to DeepSpeed, ``ddp`` to torch DDP,
``horovod`` to Horovod, ``fsdp`` to torch FSDP2. Which engine owns which section is the engine registry's
(:mod:`launcher.spec.engines`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .schema import knob

Precision = Literal["bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class Training:
    """Batch, precision, clipping, recompute and length: the knobs every engine shares."""

    precision: Precision = knob("bf16", "Mixed precision: bf16, fp16 (GPU only; bf16 on CPU) or fp32.")
    micro_batch: int = knob(4, "Sequences per rank per forward/backward pass.", ge=1)
    grad_accum: int | None = knob(
        None, "Micro batches accumulated per optimizer step (default 1, or solved from global_batch).", ge=1)
    global_batch: int | None = knob(
        None, "Sequences per optimizer step across all ranks; when set, grad_accum is solved from it.", ge=1)
    grad_clip: float = knob(1.0, "Clip the global gradient norm to this value (0 disables clipping).", ge=0)
    activation_checkpointing: bool = knob(False, "Recompute activations in backward to save memory.")
    loss_scale: float = knob(0.0, "fp16 only: static loss scale, 0 for dynamic loss scaling.", ge=0)
    initial_scale_power: int = knob(16, "fp16 only: dynamic loss scaling starts at 2**this.", ge=0, le=32)
    steps: int = knob(200, "Optimizer steps to train (also the LR schedule's length).", ge=1)
    log_interval: int = knob(10, "Print step, loss, tokens/s and memory every this many steps.", ge=1)


@dataclass(frozen=True)
class Optimizer:
    """The AdamW-family optimizer every engine builds."""

    type: Literal["adamw", "adam"] = knob(
        "adamw", "adamw: decoupled weight decay; adam: L2 penalty folded into the gradient.")
    lr: float = knob(3e-4, "Peak learning rate (reached at the end of warmup).", gt=0)
    betas: tuple[float, float] = knob((0.9, 0.95), "Adam's (beta1, beta2).")
    eps: float = knob(1e-8, "Adam's epsilon.", gt=0)
    weight_decay: float = knob(0.1, "Weight decay coefficient.", ge=0)


@dataclass(frozen=True)
class Scheduler:
    """Linear warmup, then cosine, linear or no decay."""

    type: Literal["cosine", "linear", "constant"] = knob(
        "cosine", "LR decay after warmup: cosine to min_lr_ratio, linear to 0, or constant.")
    warmup_ratio: float = knob(0.05, "Fraction of training.steps spent warming up linearly from 0.", ge=0, le=1)
    min_lr_ratio: float = knob(0.1, "cosine only: the final LR as a fraction of the peak LR.", ge=0, le=1)


@dataclass(frozen=True)
class Offload:
    """Where ZeRO keeps offloaded optimizer states or parameters (GPU, CPU or NVMe)."""

    device: Literal["none", "cpu", "nvme"] = knob("none", "Where to keep the tensors: none (GPU), cpu or nvme.")
    pin_memory: bool = knob(True, "Page-lock host buffers for faster transfers (costs host RAM).")
    nvme_path: str | None = knob(None, "Directory on a fast local NVMe drive; required for device nvme.")


@dataclass(frozen=True)
class Zero:
    """DeepSpeed ZeRO: the stage, communication buckets, stage-3 limits, offload and ZeRO++."""

    stage: Literal[0, 1, 2, 3] = knob(1, "ZeRO stage: 0 off, 1 optimizer states, 2 + gradients, 3 + parameters.")
    overlap_comm: bool = knob(True, "Overlap gradient reduction with the backward pass.")
    contiguous_gradients: bool = knob(True, "Copy gradients into one contiguous buffer as they are produced.")
    reduce_scatter: bool = knob(True, "Average gradients with reduce-scatter instead of all-reduce.")
    reduce_bucket_size: int = knob(500_000_000, "Elements reduced at a time (memory vs. speed).", ge=1)
    allgather_bucket_size: int = knob(500_000_000, "Elements all-gathered at a time (stages 1-2).", ge=1)
    stage3_prefetch_bucket_size: int = knob(50_000_000, "Stage 3: elements of parameters prefetched ahead.",
                                            ge=0)
    stage3_param_persistence_threshold: int = knob(
        100_000, "Stage 3: parameters smaller than this stay unpartitioned.", ge=0)
    stage3_max_live_parameters: int = knob(1_000_000_000, "Stage 3: parameters kept gathered at most.", ge=0)
    stage3_max_reuse_distance: int = knob(1_000_000_000, "Stage 3: keep a parameter if reused within this.",
                                          ge=0)
    stage3_gather_16bit_weights_on_model_save: bool = knob(
        False, "Stage 3: gather full 16-bit weights when saving (a loadable model file, slower saves).")
    sub_group_size: int = knob(1_000_000_000, "Stage 3: optimizer step granularity in elements.", ge=1)
    offload_optimizer: Offload = knob(Offload(), "Optimizer states (and step) off the GPU: ZeRO-Offload.")
    offload_param: Offload = knob(Offload(), "Stage 3: parameters off the GPU: ZeRO-Infinity.")
    quantized_weights: bool = knob(False, "ZeRO++ qwZ: all-gather weights quantized to int8 (stage 3).")
    quantized_gradients: bool = knob(False, "ZeRO++ qgZ: reduce-scatter gradients quantized to int4 (stage 3).")
    hpz_partition_size: int | Literal["gpus_per_node"] = knob(
        1, "ZeRO++ hpZ: secondary weight partition size; gpus_per_node keeps a full copy per node.", ge=1)


@dataclass(frozen=True)
class Pipeline:
    """DeepSpeed pipeline parallelism: stages and how layers are split across them."""

    stages: int = knob(2, "Pipeline stages; the world size must be a multiple of it.", ge=1)
    partition_method: str = knob(
        "parameters", "How layers are split across stages: parameters, uniform or type:REGEX.")
    activation_checkpoint_interval: int = knob(0, "Checkpoint every N layers inside a stage (0 = off).", ge=0)
    pipe_partitioned: bool = knob(True, "Partition activations sent between stages across tensor ranks.")
    grad_partitioned: bool = knob(True, "Partition gradients sent between stages across tensor ranks.")


@dataclass(frozen=True)
class TensorParallel:
    """DeepSpeed AutoTP: each linear layer split across ``autotp_size`` ranks for training, beside ZeRO."""

    autotp_size: int = knob(2, "Ranks each layer is split across (the model's own tp_plan where it has one); "
                               "the world size must be divisible by it; its ranks share their inputs.", ge=1)


@dataclass(frozen=True)
class DDP:
    """torch DistributedDataParallel's knobs."""

    bucket_cap_mb: float = knob(25.0, "Gradient bucket size in MiB for all-reduce.", gt=0)
    static_graph: bool = knob(False, "The graph is the same every step: lets DDP skip per-step bookkeeping.")
    gradient_as_bucket_view: bool = knob(True, "Gradients are views into the buckets: saves a copy.")
    find_unused_parameters: bool = knob(False, "Search the graph for parameters without gradients.")


@dataclass(frozen=True)
class FSDP:
    """torch FSDP2 (``fully_shard``): each decoder layer and the root sharded over the data-parallel ranks,
    optionally over a tensor-parallel (DTensor) mesh dimension inside each layer."""

    reshard_after_forward: bool = knob(
        True, "Free a layer's gathered parameters after its forward and gather them again for backward "
        "(ZeRO-3-like); false keeps them until backward (ZeRO-2-like: more memory, one all-gather less).")
    reduce_dtype: Literal["fp32", "bf16"] = knob(
        "fp32", "bf16 precision only: the dtype gradients are reduce-scattered in (fp32 is exact, bf16 halves "
        "the traffic).")
    offload: bool = knob(False, "CPUOffloadPolicy: sharded parameters, gradients and optimizer states live on "
                                "the CPU and the optimizer steps there; layers are copied in for compute.")
    tp: int = knob(1, "Tensor-parallel degree (DTensor, inside each Llama block): a (dp, tp) mesh; the world "
                      "size must be divisible by it and it must divide the heads, KV heads and MLP size.", ge=1)


@dataclass(frozen=True)
class Compression:
    """Compression while training: quantization-aware training of the decoder's linear weights (torch's
    fake-quantize op, straight-through gradients), magnitude pruning of the MLP weights and pruning of whole
    attention heads (masks from ``torch.nn.utils.prune``); baked into plain weights before the final save."""

    weight_bits: int | None = knob(None, "QAT: fake-quantize every decoder linear weight to this many bits "
                                         "(symmetric, one scale per output row); null: off.", ge=2, le=8)
    start_bits: int = knob(8, "QAT: bits used before quantize_offset (a gentle start).", ge=2, le=16)
    quantize_offset: int = knob(0, "QAT: the optimizer step from which weight_bits applies.", ge=0)
    sparsity: float = knob(0.0, "Fraction of each MLP weight pruned by L1 magnitude (0: off).", ge=0, le=0.99)
    head_sparsity: float = knob(0.0, "Fraction of attention heads pruned in every layer, by the L2 norm of "
                                     "their output-projection columns (0: off).", ge=0, le=0.99)
    prune_offset: int = knob(0, "The optimizer step at which the pruning masks are computed and applied.", ge=0)


@dataclass(frozen=True)
class Horovod:
    """Horovod's knobs: controller, Tensor Fusion, cycle time, cache, compression, reduction."""

    controller: Literal["gloo", "mpi"] = knob("gloo", "Horovod's controller: gloo (no MPI needed) or mpi.")
    fusion_threshold_mb: int = knob(64, "Tensor Fusion buffer in MiB (0 disables fusion).", ge=0)
    cycle_time_ms: float = knob(5.0, "How long the background thread waits to batch tensors.", gt=0)
    cache_capacity: int = knob(1024, "Response cache entries (0 disables the cache).", ge=0)
    compression: Literal["none", "fp16"] = knob("none", "Compress gradients for the all-reduce.")
    op: Literal["average", "adasum", "sum"] = knob("average", "Gradient reduction: average, adasum or sum.")
    hierarchical_allreduce: bool = knob(False, "All-reduce within nodes first, then across nodes.")
    hierarchical_allgather: bool = knob(False, "All-gather within nodes first, then across nodes.")
    gradient_predivide_factor: float = knob(1.0, "Divide gradients by this before, the rest after (average).",
                                            gt=0)


@dataclass(frozen=True)
class Strategy:
    """A named strategy, resolved and validated: shared sections plus the sections its engine owns.

    Invariant (checked by :func:`launcher.spec.catalog.build`): only the engine's own sections are set."""

    name: str = knob("", "The strategy's name (its file name without .yaml).")
    description: str = knob("", "One line: what this strategy is for.")
    engine: str = knob("deepspeed", "Which engine runs it: deepspeed, ddp, fsdp2 or horovod "
                                    "(launcher.spec.engines).")
    training: Training = knob(Training(), "Batch, precision, clipping, steps: shared by every engine.")
    optimizer: Optimizer = knob(Optimizer(), "The AdamW-family optimizer.")
    scheduler: Scheduler = knob(Scheduler(), "Warmup, then decay.")
    zero: Zero | None = knob(None, "DeepSpeed only: ZeRO partitioning and offload.")
    pipeline: Pipeline | None = knob(None, "DeepSpeed only: pipeline parallelism.")
    tensor_parallel: TensorParallel | None = knob(None, "DeepSpeed only: AutoTP tensor parallelism.")
    ddp: DDP | None = knob(None, "ddp only: DistributedDataParallel knobs.")
    compression: Compression | None = knob(None, "ddp only: quantization-aware training and pruning.")
    horovod: Horovod | None = knob(None, "horovod only: Horovod knobs.")
    fsdp: FSDP | None = knob(None, "fsdp2 only: torch FSDP2 sharding, offload and tensor parallelism.")
    deepspeed: dict[str, Any] = knob({}, "DeepSpeed only: extra DeepSpeed config keys merged in verbatim.")

