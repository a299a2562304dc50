"""The LR schedule for engines without DeepSpeed's scheduler, with DeepSpeed's semantics."""

from __future__ import annotations

import math

MIN_WARMUP = 2  # DeepSpeed's Warmup*LR schedulers warm up over at least 2 steps


def scheduler(optimizer, s: dict):
    """A torch ``LambdaLR`` following the rendered ``scheduler`` block ``s`` with :func:`lr_factor`."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, s["type"], s["warmup_steps"], s["total_steps"], s["min_lr_ratio"]))


def lr_factor(step: int, kind: str, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the peak LR for optimizer step ``step`` (0-based), exactly as DeepSpeed's WarmupCosineLR,
    WarmupDecayLR and WarmupLR (linear warmup from 0) set it, so that a DDP, FSDP2 or Horovod run and a DeepSpeed
    run of one strategy take the same steps. DeepSpeed's scheduler is one behind the optimizer: step ``s`` runs
    with the ratio of its iteration ``s - 1`` (iteration -1, before it started, is 0)."""
    iteration, warmup = step - 1, max(MIN_WARMUP, warmup)
    if iteration < warmup:
        return max(0, iteration) / warmup
    if kind == "constant":
        return 1.0
    if kind == "linear":
        return max(0.0, (total - iteration) / max(1, total - warmup))
    progress = min(1.0, (iteration - warmup + 1) / max(1, total - warmup))
    return max(0.0, min_ratio + (1.0 - min_ratio) * (1 + math.cos(math.pi * progress)) / 2)
