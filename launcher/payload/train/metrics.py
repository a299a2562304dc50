"""Per-interval progress lines on rank 0 and the numbers that end up in result.json."""

from __future__ import annotations

import math
import resource
import time

import torch


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Meter:
    """Loss per step, throughput over the steady state (the first step, which builds kernels, excluded)."""

    def __init__(self, total_steps: int, tokens_per_step: int, log_interval: int, device: torch.device,
                 started: float, verbose: bool):
        self.total, self.tokens_per_step, self.interval = total_steps, tokens_per_step, log_interval
        self.device, self.started, self.verbose = device, started, verbose
        self.losses: list[float] = []
        self.first_step_done: float | None = None
        self.window_start = time.perf_counter()

    def update(self, step: int, loss: float, lr: float) -> None:
        now = time.perf_counter()
        self.losses.append(loss)
        if self.first_step_done is None:
            self.first_step_done = now
        done = step + 1
        if self.verbose and (done % self.interval == 0 or done == self.total or len(self.losses) == 1):
            steps_in_window = 1 if len(self.losses) == 1 else min(self.interval, len(self.losses) - 1) or 1
            rate = steps_in_window / max(now - self.window_start, 1e-9)
            eta = (self.total - done) / rate if rate else math.inf
            print(f"step {done:>6}/{self.total} [{100 * done // self.total:>3}%] loss {loss:.4f} lr {lr:.2e} "
                  f"tok/s {rate * self.tokens_per_step:,.0f} mem {peak_memory_mb(self.device):,.0f} MB "
                  f"eta {eta:,.0f}s", flush=True)
            self.window_start = now

    def summary(self) -> dict:
        now = time.perf_counter()
        steady = len(self.losses) - 1
        seconds = now - self.first_step_done if self.first_step_done and steady > 0 else math.nan
        steps_per_s = steady / seconds if steady > 0 else math.nan
        return {
            "loss_first": self.losses[0] if self.losses else math.nan,
            "loss_last": self.losses[-1] if self.losses else math.nan,
            "losses": self.losses,
            "steps_per_s": steps_per_s,
            "tokens_per_s": steps_per_s * self.tokens_per_step,
            "time_to_first_step_s": (self.first_step_done or now) - self.started,
            "peak_mem_mb": peak_memory_mb(self.device),
        }
