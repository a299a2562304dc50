"""DeepSpeed: ZeRO 0-3 (offload, ZeRO++), pipeline and AutoTP tensor parallelism, from DeepSpeed's own JSON
config."""

from __future__ import annotations

from ..strategy import Strategy, Zero
from . import CpuChange, EngineSpec, Knob


def cpu_changes(strategy: Strategy) -> list[CpuChange]:
    """ZeRO++ quantization has no CPU kernel in DeepSpeed: switched off, with a notice."""
    zero = strategy.zero or Zero()
    changes = []
    for knob, label in (("quantized_weights", "qwZ"), ("quantized_gradients", "qgZ")):
        if getattr(zero, knob):
            changes.append((f"zero.{knob}=false", f"ZeRO++ {label} (zero.{knob}) has no CPU kernel; off on CPU"))
    return changes


SPEC = EngineSpec(
    name="deepspeed",
    description="DeepSpeed ZeRO 0-3, offload, ZeRO++, pipeline and AutoTP tensor parallelism",
    renderer="launcher.render.deepspeed:render",
    estimator="launcher.estimate.deepspeed:estimate",
    tunable={"zero.reduce_bucket_size": Knob(1e6, 1e9, integer=True),
             "zero.allgather_bucket_size": Knob(1e6, 1e9, integer=True, multiple=2)},  # DeepSpeed asserts it
    sections=frozenset({"zero", "pipeline", "tensor_parallel", "deepspeed"}),
    defaults={"zero": Zero()},
    payload="launcher.payload.train.engines.deepspeed",
    checker="launcher.render.deepspeed_check:check",
    config_flag="--deepspeed_config",  # what deepspeed.add_config_arguments / initialize(args=…) read
    native_config=True,
    hf_flavour=True,
    k8s_kinds=("pytorchjob", "mpijob", "trainjob"),
    k8s_runtime="deepspeed-distributed",  # DeepSpeed over MPI
    cpu_changes=cpu_changes,
)
