"""torch DistributedDataParallel with autocast, gradient accumulation (no_sync), clipping, LR schedule."""

from __future__ import annotations

import contextlib
import os

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import schedule
from ..comm import Comm, TorchComm
from ..compression import Compressor
from ..pipeline_model import lm_loss
from ..runtime import Runtime
from . import loads_anywhere, params_digest, training_at_world, training_shape

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def connect(rt: Runtime) -> Comm:
    return TorchComm(rt)


class DDPEngine:
    """The model under torch DDP with autocast, accumulation without sync, clipping and the LR schedule."""

    identical_replicas = True

    def __init__(self, config: dict, model: torch.nn.Module, context):
        t, rt = config["training"], context.runtime
        self.training, self.device = t, rt.device
        self.data_parallel_rank, self.data_parallel_size = rt.rank, rt.world_size
        self.batches = context.batches(rt.rank, rt.world_size)
        if t["activation_checkpointing"]:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.compressor = Compressor(config["compression"], model) if config.get("compression") else None
        self.results: dict = {}  # entries for result.json (what compression achieved)
        ids = [rt.local_rank] if rt.device.type == "cuda" else None
        self.model = DistributedDataParallel(model.to(rt.device), device_ids=ids, **config["ddp"],
                                             broadcast_buffers=self.compressor is None)  # masks: same everywhere
        self.optimizer = _optimizer(t["optimizer"], self.model.parameters(), rt.device.type == "cuda")
        self.scheduler = schedule.scheduler(self.optimizer, t["scheduler"])
        self.dtype = _DTYPES[t["precision"]]
        self.scaler = torch.amp.GradScaler(enabled=t["precision"] == "fp16")

    @property
    def module(self) -> torch.nn.Module:
        return self.model.module

    def train_step(self, step: int) -> float:
        if self.compressor is not None:
            self.compressor.before_step(step)
        accum, total = self.training["grad_accum"], 0.0
        for micro in range(accum):
            inputs, labels = (t.to(self.device, non_blocking=True) for t in self.batches.get(step, micro))
            sync = contextlib.nullcontext() if micro == accum - 1 else self.model.no_sync()
            with sync, torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = lm_loss(self.model(input_ids=inputs).logits, labels)
                self.scaler.scale(loss / accum).backward()
            total += loss.item()
        self.scaler.unscale_(self.optimizer)
        if self.training["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.training["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / accum

    def save(self, directory: str, step: int) -> None:
        if self.compressor is not None and step == self.training["steps"]:  # the final save: plain weights
            self.results["compression"] = self.compressor.bake()
        if self.data_parallel_rank == 0:
            state = {"model": self.model.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "step": step}
            torch.save(state, os.path.join(directory, "state.pt"))

    def load(self, directory: str) -> int:
        state = torch.load(os.path.join(directory, "state.pt"), map_location=self.device, weights_only=True)
        if self.compressor is not None and not any("parametrizations" in key for key in state["model"]):
            raise SystemExit(f"launchdeck: error: {directory} holds a compressed run's final, baked weights: it is "
                             "the run's result, not a point to resume compression from")
        self.model.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        return int(state["step"])

    def digest(self) -> str:
        return params_digest(self.model.module.named_parameters())

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def close(self) -> None:
        """Drop the model (its reducer holds the process group), optimizer and schedule."""
        self.model = self.optimizer = self.scheduler = None


def _optimizer(o: dict, params, cuda: bool) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if o["type"] == "adamw" else torch.optim.Adam
    return cls(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"],
               fused=cuda or None)


shape = training_shape  # the engine-neutral training block
resumable = loads_anywhere  # rank 0 saves the whole state
at_world = training_at_world
create = DDPEngine
