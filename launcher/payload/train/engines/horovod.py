"""Horovod: DistributedOptimizer with the rendered compression, op and backward passes per step."""

from __future__ import annotations

import os

import horovod.torch as hvd
import torch

from .. import schedule
from ..comm import Comm, HorovodComm
from ..pipeline_model import lm_loss
from ..runtime import Runtime
from . import loads_anywhere, params_digest, training_at_world, training_shape
from .ddp import _DTYPES, _optimizer


def connect(rt: Runtime) -> Comm:
    return HorovodComm(rt)


class HorovodEngine:
    """The model under Horovod's DistributedOptimizer (rendered compression, op, backward passes per step)."""

    identical_replicas = True

    def __init__(self, config: dict, model: torch.nn.Module, context):
        t, w, rt = config["training"], config["optimizer_wrapper"], context.runtime
        self.training, self.device = t, rt.device
        self.data_parallel_rank, self.data_parallel_size = hvd.rank(), hvd.size()
        self.batches = context.batches(hvd.rank(), hvd.size())
        if t["activation_checkpointing"]:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = model.to(rt.device)
        base = _optimizer(t["optimizer"], self.model.parameters(), rt.device.type == "cuda")
        hvd.broadcast_parameters(self.model.state_dict(), root_rank=0)
        hvd.broadcast_optimizer_state(base, root_rank=0)
        self.optimizer = hvd.DistributedOptimizer(
            base, named_parameters=self.model.named_parameters(),
            compression=hvd.Compression.fp16 if w["compression"] == "fp16" else hvd.Compression.none,
            op={"Average": hvd.Average, "Adasum": hvd.Adasum, "Sum": hvd.Sum}[w["op"]],
            backward_passes_per_step=w["backward_passes_per_step"],
            gradient_predivide_factor=w["gradient_predivide_factor"])
        self.scheduler = schedule.scheduler(self.optimizer, t["scheduler"])
        self.dtype = _DTYPES[t["precision"]]

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    def train_step(self, step: int) -> float:
        accum, total = self.training["grad_accum"], 0.0
        for micro in range(accum):
            inputs, labels = (t.to(self.device, non_blocking=True) for t in self.batches.get(step, micro))
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = lm_loss(self.model(input_ids=inputs).logits, labels)
            (loss / accum).backward()
            total += loss.item()
        self.optimizer.synchronize()  # the all-reduce of the accumulated gradients
        if self.training["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.training["grad_clip"])
        with self.optimizer.skip_synchronize():
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()  # Horovod's wrapper takes no set_to_none
        return total / accum

    def save(self, directory: str, step: int) -> None:
        if hvd.rank() == 0:
            state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "step": step}
            torch.save(state, os.path.join(directory, "state.pt"))

    def load(self, directory: str) -> int:
        state = torch.load(os.path.join(directory, "state.pt"), map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        return int(state["step"])

    def digest(self) -> str:
        return params_digest(self.model.named_parameters())

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def close(self) -> None:
        self.model = self.optimizer = self.scheduler = None


shape = training_shape  # the engine-neutral training block
resumable = loads_anywhere  # rank 0 saves the whole state
at_world = training_at_world
create = HorovodEngine
