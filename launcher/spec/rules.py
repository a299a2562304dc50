"""Cross-field rules of a strategy that hold whatever the cluster: each names the knob to change."""

from __future__ import annotations

import re

from .schema import SchemaError
from .strategy import Offload, Strategy, Zero


def check(strategy: Strategy) -> None:
    """Raise :class:`SchemaError` for the first rule the strategy breaks."""
    if strategy.zero is not None:
        _check_zero(strategy.zero)
    if strategy.pipeline is not None:
        _check_pipeline(strategy)
    if strategy.tensor_parallel is not None and strategy.pipeline is not None:
        raise SchemaError("tensor_parallel.autotp_size", "AutoTP does not combine with DeepSpeed's pipeline engine "
                          "here; drop the pipeline section or the tensor_parallel one")
    if strategy.horovod is not None:
        h = strategy.horovod
        if h.op != "average" and h.gradient_predivide_factor != 1.0:
            raise SchemaError("horovod.gradient_predivide_factor",
                              f"only applies to op average (op is {h.op}); set it to 1.0")
    s = strategy.scheduler
    if s.type == "linear" and s.min_lr_ratio != 0:
        raise SchemaError("scheduler.min_lr_ratio", f"linear decays to 0 (DeepSpeed's WarmupDecayLR); "
                          f"set scheduler.min_lr_ratio=0 (got {s.min_lr_ratio}) or use type cosine")
    t = strategy.training
    if t.global_batch is not None and t.global_batch < t.micro_batch:
        raise SchemaError("training.global_batch",
                          f"{t.global_batch} is smaller than training.micro_batch {t.micro_batch}")


def _check_zero(z: Zero) -> None:
    needs_stage3 = {
        "zero.offload_param.device": z.offload_param.device != "none",
        "zero.quantized_weights": z.quantized_weights,
        "zero.quantized_gradients": z.quantized_gradients,
        "zero.hpz_partition_size": z.hpz_partition_size != 1,
    }
    for key, used in needs_stage3.items():
        if used and z.stage != 3:
            raise SchemaError(key, f"needs ZeRO stage 3 (zero.stage is {z.stage})")
    if z.stage in (1, 2) and z.allgather_bucket_size % 2:  # stage_1_and_2.py asserts it at start-up
        raise SchemaError("zero.allgather_bucket_size", f"must be a multiple of 2 for ZeRO-1/2 (DeepSpeed's "
                          f"nccl_start_alignment_factor); got {z.allgather_bucket_size:.0f}")
    if z.offload_optimizer.device != "none" and z.stage == 0:
        raise SchemaError("zero.offload_optimizer.device", "needs ZeRO stage 1, 2 or 3 (zero.stage is 0)")
    _check_offload("zero.offload_optimizer", z.offload_optimizer)
    _check_offload("zero.offload_param", z.offload_param)


def _check_offload(path: str, o: Offload) -> None:
    if o.device == "nvme" and not o.nvme_path:
        raise SchemaError(f"{path}.nvme_path", "required when device is nvme")
    if o.device != "nvme" and o.nvme_path:
        raise SchemaError(f"{path}.nvme_path", f"only used with device nvme (device is {o.device})")


def _check_pipeline(strategy: Strategy) -> None:
    p, z = strategy.pipeline, strategy.zero
    if z is not None and z.stage > 1:
        raise SchemaError("zero.stage", f"DeepSpeed refuses pipeline parallelism with ZeRO stage {z.stage}: "
                          "only stage 0 or 1 partition along pipeline stages")
    method = p.partition_method
    if method not in ("parameters", "uniform") and not method.startswith("type:"):
        raise SchemaError("pipeline.partition_method",
                          f"expected parameters, uniform or type:REGEX; got {method!r}")
    if method.startswith("type:"):
        try:
            re.compile(method[5:])
        except re.error as exc:
            raise SchemaError("pipeline.partition_method", f"bad regular expression: {exc}") from None
