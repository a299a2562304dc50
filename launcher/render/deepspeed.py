"""Strategy → DeepSpeed JSON that raw DeepSpeed accepts: batch solved, no "auto", keys checked.

With ``hf=True`` the same config in the Hugging Face Trainer's flavour: "auto" wherever the
Trainer fills the value from its TrainingArguments (batch sizes, optimizer and scheduler numbers,
precision switches, model-size-dependent bucket sizes).
"""

from __future__ import annotations

from typing import Any

from ..errors import RenderError
from ..spec.catalog import deep_merge
from ..spec.strategy import Offload, Strategy, Zero
from . import Cluster, RenderedConfig
from .batch import Batch, data_parallel_size, solve
from .common import warmup_steps
from .ds_keys import PIPELINE_KEYS, SOLVED_KEYS, TOP_LEVEL_KEYS

_OPTIMIZER_TYPES = {"adamw": "AdamW", "adam": "Adam"}


def render(strategy: Strategy, cluster: Cluster, *, hf: bool = False) -> RenderedConfig:
    zero = strategy.zero or Zero()
    if cluster.accelerator == "cpu" and (zero.quantized_weights or zero.quantized_gradients):
        raise RenderError("ZeRO++ quantization (zero.quantized_weights / zero.quantized_gradients) has no CPU "
                          "kernel in DeepSpeed; set both to false on CPU")
    batch = solve(strategy.training, _data_parallel(strategy, cluster))
    config = deepspeed_config(strategy, cluster, batch)
    check_keys(config)
    if hf:
        config = hf_flavour(config)
    return RenderedConfig(strategy, cluster, config, batch.data_parallel)


def _data_parallel(strategy: Strategy, cluster: Cluster) -> int:
    """Ranks holding distinct data: the world over the pipeline stages or the AutoTP degree."""
    if strategy.pipeline:
        return data_parallel_size(cluster.world_size, strategy.pipeline.stages)
    tp = strategy.tensor_parallel.autotp_size if strategy.tensor_parallel else 1
    return data_parallel_size(cluster.world_size, tp, "tensor_parallel.autotp_size")


def deepspeed_config(strategy: Strategy, cluster: Cluster, batch: Batch) -> dict[str, Any]:
    t = strategy.training
    config: dict[str, Any] = {
        "train_batch_size": batch.global_,
        "train_micro_batch_size_per_gpu": batch.micro,
        "gradient_accumulation_steps": batch.accum,
        "gradient_clipping": t.grad_clip,
        "steps_per_print": t.log_interval,
        "wall_clock_breakdown": False,
        **_precision(strategy),
        "optimizer": _optimizer(strategy, cluster),
        "scheduler": _scheduler(strategy),
        "zero_optimization": _zero(strategy.zero or Zero(), cluster),
    }
    if t.activation_checkpointing:
        config["activation_checkpointing"] = {"partition_activations": False, "cpu_checkpointing": False,
                                              "contiguous_memory_optimization": False}
    if strategy.tensor_parallel and strategy.tensor_parallel.autotp_size > 1:
        config["tensor_parallel"] = {"autotp_size": strategy.tensor_parallel.autotp_size}
    if strategy.pipeline:
        p = strategy.pipeline
        config["pipeline"] = {"stages": p.stages, "partition": p.partition_method,
                              "activation_checkpoint_interval": p.activation_checkpoint_interval,
                              "pipe_partitioned": p.pipe_partitioned, "grad_partitioned": p.grad_partitioned}
    clash = SOLVED_KEYS & strategy.deepspeed.keys()
    if clash:
        raise RenderError(f"deepspeed.{sorted(clash)[0]}: solved by launchdeck; set training.micro_batch, "
                          "training.grad_accum or training.global_batch instead")
    return deep_merge(config, strategy.deepspeed)


def check_keys(config: dict[str, Any]) -> None:
    """DeepSpeed ignores unknown top-level and pipeline keys; we refuse them, with a suggestion."""
    import difflib

    for key in config:
        if key not in TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(key, TOP_LEVEL_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise RenderError(f"deepspeed.{key}: not a DeepSpeed config key (DeepSpeed would ignore it){hint}")
    for key in config.get("pipeline", {}):
        if key not in PIPELINE_KEYS:
            raise RenderError(f"deepspeed.pipeline.{key}: not a DeepSpeed pipeline key "
                              f"(known: {', '.join(sorted(PIPELINE_KEYS))})")


def _precision(strategy: Strategy) -> dict[str, Any]:
    t = strategy.training
    if t.precision == "bf16":
        return {"bf16": {"enabled": True}}
    if t.precision == "fp16":
        return {"fp16": {"enabled": True, "loss_scale": t.loss_scale, "initial_scale_power": t.initial_scale_power,
                         "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1}}
    return {}


def _optimizer(strategy: Strategy, cluster: Cluster) -> dict[str, Any]:
    o, zero = strategy.optimizer, strategy.zero or Zero()
    params: dict[str, Any] = {"lr": o.lr, "betas": list(o.betas), "eps": o.eps, "weight_decay": o.weight_decay}
    if o.type == "adam":
        params["adam_w_mode"] = False  # DeepSpeed's "Adam" is AdamW unless told otherwise
    if cluster.accelerator == "cpu" and zero.offload_optimizer.device == "none":
        params["torch_adam"] = True  # FusedAdam is a GPU kernel; on CPU torch's Adam(W) is the fast path
    return {"type": _OPTIMIZER_TYPES[o.type], "params": params}


def _scheduler(strategy: Strategy) -> dict[str, Any]:
    s, o, steps = strategy.scheduler, strategy.optimizer, strategy.training.steps
    warmup = warmup_steps(strategy)
    if s.type == "cosine":
        return {"type": "WarmupCosineLR", "params": {
            "total_num_steps": steps, "warmup_num_steps": warmup, "warmup_min_ratio": 0.0,
            "cos_min_ratio": s.min_lr_ratio, "warmup_type": "linear"}}
    params = {"warmup_min_lr": 0.0, "warmup_max_lr": o.lr, "warmup_num_steps": warmup, "warmup_type": "linear"}
    if s.type == "linear":
        return {"type": "WarmupDecayLR", "params": {"total_num_steps": steps, **params}}
    return {"type": "WarmupLR", "params": params}


def _zero(z: Zero, cluster: Cluster) -> dict[str, Any]:
    if z.stage == 0:
        return {"stage": 0}
    section: dict[str, Any] = {
        "stage": z.stage, "overlap_comm": z.overlap_comm, "contiguous_gradients": z.contiguous_gradients,
        "reduce_scatter": z.reduce_scatter, "reduce_bucket_size": z.reduce_bucket_size,
    }
    if z.stage < 3:
        section["allgather_bucket_size"] = z.allgather_bucket_size
    else:
        section.update(_stage3(z, cluster))
    for name, offload in (("offload_optimizer", z.offload_optimizer), ("offload_param", z.offload_param)):
        if offload.device != "none":
            section[name] = _offload(offload)
    return section


def _stage3(z: Zero, cluster: Cluster) -> dict[str, Any]:
    return {
        "stage3_prefetch_bucket_size": z.stage3_prefetch_bucket_size,
        "stage3_param_persistence_threshold": z.stage3_param_persistence_threshold,
        "stage3_max_live_parameters": z.stage3_max_live_parameters,
        "stage3_max_reuse_distance": z.stage3_max_reuse_distance,
        "stage3_gather_16bit_weights_on_model_save": z.stage3_gather_16bit_weights_on_model_save,
        "sub_group_size": z.sub_group_size,
        "zero_quantized_weights": z.quantized_weights,
        "zero_quantized_gradients": z.quantized_gradients,
        "zero_hpz_partition_size": hpz_partition_size(z, cluster),
    }


def hpz_partition_size(z: Zero, cluster: Cluster) -> int:
    """hpZ's secondary partition: a node's ranks, or a fixed size that must divide the world."""
    size = cluster.ranks_per_node if z.hpz_partition_size == "gpus_per_node" else z.hpz_partition_size
    if cluster.world_size % size:
        raise RenderError(f"zero.hpz_partition_size {size} does not divide world size {cluster.world_size} "
                          f"({cluster.world_size} % {size} = {cluster.world_size % size})")
    return size


def _offload(o: Offload) -> dict[str, Any]:
    section: dict[str, Any] = {"device": o.device, "pin_memory": o.pin_memory}
    if o.nvme_path:
        section["nvme_path"] = o.nvme_path
    return section


# Paths the Hugging Face Trainer fills from TrainingArguments / the model when they say "auto".
_HF_AUTO = (
    ("train_batch_size",), ("train_micro_batch_size_per_gpu",), ("gradient_accumulation_steps",),
    ("gradient_clipping",), ("bf16", "enabled"), ("fp16", "enabled"),
    ("optimizer", "params", "lr"), ("optimizer", "params", "betas"), ("optimizer", "params", "eps"),
    ("optimizer", "params", "weight_decay"),
    ("scheduler", "params", "warmup_min_lr"), ("scheduler", "params", "warmup_max_lr"),
    ("scheduler", "params", "warmup_num_steps"), ("scheduler", "params", "total_num_steps"),
    ("zero_optimization", "reduce_bucket_size"), ("zero_optimization", "stage3_prefetch_bucket_size"),
    ("zero_optimization", "stage3_param_persistence_threshold"),
)


def hf_flavour(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with "auto" at every path the HF Trainer fills itself."""
    import copy

    result = copy.deepcopy(config)
    for path in _HF_AUTO:
        node = result
        for key in path[:-1]:
            node = node.get(key, {})
        if path[-1] in node:
            node[path[-1]] = "auto"
    return result
