"""DeepSpeed ZeRO 0-3 (with offload and ZeRO++ knobs) driven by the rendered JSON."""

from __future__ import annotations

import deepspeed
import torch

from ..pipeline_model import lm_loss
from . import params_digest

TAG = "state"


class DeepSpeedEngine:
    identical_replicas = True

    def __init__(self, config: dict, model: torch.nn.Module, context):
        rt = context.runtime
        self.data_parallel_rank = rt.rank
        self.batches = context.batches(rt.rank)
        if context.activation_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)

    @property
    def module(self) -> torch.nn.Module:
        return self.engine.module

    def train_step(self, step: int) -> float:
        engine, losses = self.engine, []
        for micro in range(engine.gradient_accumulation_steps()):
            inputs, labels = (t.to(engine.device) for t in self.batches.get(step, micro))
            loss = lm_loss(engine(input_ids=inputs).logits, labels)
            engine.backward(loss)
            engine.step()
            losses.append(loss.item())
        return sum(losses) / len(losses)

    def save(self, directory: str, step: int) -> None:
        self.engine.save_checkpoint(directory, tag=TAG, client_state={"step": step}, save_latest=False)

    def load(self, directory: str) -> int:
        path, client = self.engine.load_checkpoint(directory, tag=TAG)
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
