"""Per-interval progress lines on rank 0 and the numbers that end up in result.json.

Throughput counts training steps only: each step's own duration (forward, backward, optimizer step, the
loss read back) is measured by the loop and handed in, so checkpoint saves between steps, the final
digest, gathers and shutdown never count. The first ``warmup`` steps (kernels built, optimizer states
made, memory measured) are left out of the rates.
"""

from __future__ import annotations

import math
import resource
import statistics

import torch


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Meter:
    """Loss and duration per step; rates over the steady steps (after ``warmup``), progress every interval."""

    def __init__(self, total_steps: int, tokens_per_step: int, log_interval: int, device: torch.device,
                 started: float, verbose: bool, warmup: int = 1):
        self.total, self.tokens_per_step, self.interval = total_steps, tokens_per_step, log_interval
        self.device, self.started, self.verbose, self.warmup = device, started, verbose, warmup
        self.losses: list[float] = []
        self.seconds: list[float] = []  # each step's own duration
        self.first_step_done: float | None = None
        self.printed = 0  # steps already covered by a progress line

    def update(self, step: int, loss: float, lr: float, seconds: float, now: float) -> None:
        """Record step ``step`` (0-based), which took ``seconds`` and ended at ``now`` (perf_counter)."""
        self.losses.append(loss)
        self.seconds.append(seconds)
        if self.first_step_done is None:
            self.first_step_done = now
        done = step + 1
        if self.verbose and (done % self.interval == 0 or done == self.total or len(self.losses) == 1):
            self._progress(done, loss, lr)

    def _progress(self, done: int, loss: float, lr: float) -> None:
        window = self.seconds[self.printed:]  # exactly the steps since the last line
        rate = len(window) / max(sum(window), 1e-9)
        eta = (self.total - done) / rate
        print(f"step {done:>6}/{self.total} [{100 * done // self.total:>3}%] loss {loss:.4f} lr {lr:.2e} "
              f"tok/s {rate * self.tokens_per_step:,.0f} mem {peak_memory_mb(self.device):,.0f} MB "
              f"eta {eta:,.0f}s", flush=True)
        self.printed = len(self.seconds)

    def steady(self) -> list[float]:
        """Durations of the steps after warmup (at least the last step, when there are too few)."""
        return self.seconds[max(min(self.warmup, len(self.seconds) - 1), 0):]

    def summary(self) -> dict:
        steady = self.steady() if len(self.seconds) > 1 else []
        steps_per_s = len(steady) / sum(steady) if steady else math.nan
        return {
            "loss_first": self.losses[0] if self.losses else math.nan,
            "loss_last": self.losses[-1] if self.losses else math.nan,
            "losses": self.losses,
            "step_seconds": self.seconds,
            "steps_per_s": steps_per_s,
            "tokens_per_s": steps_per_s * self.tokens_per_step,
            "step_time_median_s": statistics.median(steady) if steady else math.nan,
            "timed_steps": len(steady),
            "time_to_first_step_s": (self.first_step_done or self.started) - self.started,
            "peak_mem_mb": peak_memory_mb(self.device),
        }
