"""Pieces every renderer shares: the schedule in steps and the engine-neutral training block."""

from __future__ import annotations

from typing import Any

from ..spec.strategy import Strategy
from .batch import Batch


def warmup_steps(strategy: Strategy) -> int:
    """Warmup length in optimizer steps: ``warmup_ratio`` of ``training.steps``, at least 1.

    DeepSpeed >= 0.19.6 rejects ``warmup_num_steps <= 0`` when it builds the scheduler (after launch).
    """
    return max(1, round(strategy.scheduler.warmup_ratio * strategy.training.steps))


def training_block(strategy: Strategy, batch: Batch, world_size: int) -> dict[str, Any]:
    """Everything a training loop needs that is not engine-specific, with the batch solved."""
    t, o, s = strategy.training, strategy.optimizer, strategy.scheduler
    return {
        "world_size": world_size,
        "data_parallel_size": batch.data_parallel,
        "micro_batch": batch.micro,
        "grad_accum": batch.accum,
        "global_batch": batch.global_,
        "precision": t.precision,
        "grad_clip": t.grad_clip,
        "activation_checkpointing": t.activation_checkpointing,
        "steps": t.steps,
        "log_interval": t.log_interval,
        "optimizer": {"type": o.type, "lr": o.lr, "betas": list(o.betas), "eps": o.eps,
                      "weight_decay": o.weight_decay},
        "scheduler": {"type": s.type, "warmup_steps": warmup_steps(strategy), "min_lr_ratio": s.min_lr_ratio,
                      "total_steps": t.steps},
    }
