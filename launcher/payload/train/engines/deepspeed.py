"""DeepSpeed ZeRO 0-3 (with offload and ZeRO++ knobs) driven by the rendered JSON."""

from __future__ import annotations

import logging
from pathlib import Path

import deepspeed
import torch
from deepspeed.checkpoint.constants import (
    UNIVERSAL_CHECKPOINT_INFO,
    UNIVERSAL_CHECKPOINT_VERSION_KEY,
    UNIVERSAL_CHECKPOINT_VERSION_VALUE,
)
from deepspeed.utils import logger

from ..comm import Comm, TorchComm
from ..pipeline_model import lm_loss
from ..resume import UNIVERSAL, Saved, to_universal
from ..runtime import Runtime
from . import TrainShape, accum_for, data_parallel_at, params_digest

TAG = "state"


def connect(rt: Runtime) -> Comm:
    logger.setLevel(logging.WARNING)  # our progress lines replace its per-step INFO chatter
    return TorchComm(rt, init=lambda backend: deepspeed.init_distributed(dist_backend=backend))


def shape(config: dict) -> TrainShape:
    """DeepSpeed's own JSON: its batch keys, and recompute where the config asks for it."""
    return TrainShape(config["train_micro_batch_size_per_gpu"], config["train_batch_size"],
                      "activation_checkpointing" in config)


def at_world(config: dict, world_size: int) -> dict:
    """The config at ``world_size`` ranks (an elastic restart changed it): the same global batch, grad_accum
    solved again; DeepSpeed itself checks the three batch keys against the world it finds."""
    data_parallel = data_parallel_at(world_size, _stages(config) * _autotp(config), "model-parallel degree")
    micro, wanted = config["train_micro_batch_size_per_gpu"], config["train_batch_size"]
    if micro * config["gradient_accumulation_steps"] * data_parallel == wanted:
        return config
    return {**config, "gradient_accumulation_steps": accum_for(wanted, micro, data_parallel)}


def resumable(config: dict, checkpoint: Path, saved: Saved | None, rt: Runtime, comm: Comm) -> dict:
    """The config that loads ``checkpoint`` here: a ZeRO checkpoint saved at another data-parallel size goes
    through DeepSpeed's universal checkpoint (converted once, by rank 0, while the others wait)."""
    stages, tp = _stages(config), _autotp(config)
    now = rt.world_size // (stages * tp)
    split = saved.world_size // saved.data_parallel_size if saved else stages * tp  # ranks per model replica
    if split != stages * tp:
        raise SystemExit(f"launchdeck: error: {checkpoint} was saved with {split} model-parallel rank(s) per "
                         f"replica (pipeline stages × AutoTP); this run has {stages * tp}")
    partitioned = any((checkpoint / TAG).glob("*optim_states.pt"))  # ZeRO 1-3 (stage 0 keeps one full state)
    if saved is None or saved.data_parallel_size == now or not partitioned:
        return config
    if stages > 1 or tp > 1:
        split = "a pipeline" if stages > 1 else "AutoTP"
        raise SystemExit(f"launchdeck: error: {checkpoint} was saved by {split} at data-parallel size "
                         f"{saved.data_parallel_size}; it resumes only at that size (now {now})")
    if rt.is_main:
        print(f"launchdeck: {checkpoint} was saved at data-parallel size {saved.data_parallel_size}, now {now}: "
              "loading it as a DeepSpeed universal checkpoint", flush=True)
        to_universal(checkpoint, TAG)
    comm.barrier()
    return {**config, "checkpoint": {**config.get("checkpoint", {}), "load_universal": True}}


def _stages(config: dict) -> int:
    return config.get("pipeline", {}).get("stages", 1)


def _autotp(config: dict) -> int:
    return config.get("tensor_parallel", {}).get("autotp_size", 1)


def _tensor_parallel_groups(size: int):
    """DeepSpeed's (dp, tp) groups made before ``initialize`` and handed to it as ``mpu``, so that its batch
    check counts data-parallel ranks only (without it, AutoTP's ranks count as data parallel); None: no TP."""
    if size <= 1:
        return None
    from deepspeed.utils import groups

    groups._init_tp_mesh_device(tensor_model_parallel_size=size)
    return groups


def create(config: dict, model: torch.nn.Module, context) -> DeepSpeedEngine:
    """ZeRO, or a pipeline of the model's layers when the config has a pipeline section."""
    if "pipeline" in config:
        from .pipeline import PipelineEngine

        return PipelineEngine(config, model, context)
    return DeepSpeedEngine(config, model, context)


class DeepSpeedEngine:
    """The model under DeepSpeed's engine, driven by the rendered JSON (ZeRO 0-3, offload, ZeRO++)."""

    def __init__(self, config: dict, model: torch.nn.Module, context):
        mpu = _tensor_parallel_groups(_autotp(config))
        self.identical_replicas = mpu is None  # AutoTP ranks hold different slices of each layer
        self.data_parallel_rank = mpu.get_data_parallel_rank() if mpu else context.runtime.rank
        self.data_parallel_size = mpu.get_data_parallel_world_size() if mpu else context.runtime.world_size
        self.batches = context.batches(self.data_parallel_rank, self.data_parallel_size)  # a TP group: same data
        if context.activation_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config,
                                               mpu=mpu)

    @property
    def module(self) -> torch.nn.Module:
        return self.engine.module

    def train_step(self, step: int) -> float:
        engine, losses = self.engine, []
        for micro in range(engine.gradient_accumulation_steps()):
            inputs, labels = (t.to(engine.device, non_blocking=True) for t in self.batches.get(step, micro))
            loss = lm_loss(engine(input_ids=inputs).logits, labels)
            engine.backward(loss)
            engine.step()
            losses.append(loss.item())
        return sum(losses) / len(losses)

    def save(self, directory: str, step: int) -> None:
        client = {"step": step, UNIVERSAL_CHECKPOINT_INFO: {UNIVERSAL_CHECKPOINT_VERSION_KEY:
                                                            UNIVERSAL_CHECKPOINT_VERSION_VALUE}}
        self.engine.save_checkpoint(directory, tag=TAG, client_state=client, save_latest=False)

    def load(self, directory: str) -> int:
        tag = UNIVERSAL if self.engine.load_universal_checkpoint() else TAG
        path, client = self.engine.load_checkpoint(directory, tag=tag)
        if path is None:
            raise SystemExit(f"launchdeck: error: no DeepSpeed checkpoint in {directory}")
        return int(client["step"])

    def digest(self) -> str:
        params = list(self.engine.module.named_parameters())
        if self.engine.zero_optimization_stage() == 3:
            with deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=None):
                return params_digest(params)
        return params_digest(params)

    def lr(self) -> float:
        return self.engine.get_lr()[0]

    def close(self) -> None:
        """Release DeepSpeed's engine (and with it its hold on the process group)."""
        self.engine.destroy()
        self.engine = None
