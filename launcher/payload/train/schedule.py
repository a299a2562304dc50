"""The LR schedule for engines without DeepSpeed's scheduler, with DeepSpeed's semantics."""

from __future__ import annotations

import math


def lr_factor(step: int, kind: str, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based), as WarmupCosineLR/DecayLR/LR do."""
    if step < warmup:
        return step / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
