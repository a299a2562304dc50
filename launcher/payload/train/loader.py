"""A rank's micro batches in training order, built ahead by DataLoader workers while the rank computes.

The batches themselves are :class:`~.data.Batches`' (deterministic per step and micro step); this only moves
building them off the training thread, pins them on a GPU, and measures how long the rank waited for them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .data import Batches

Pair = tuple[torch.Tensor, torch.Tensor]


class _MicroSteps(Dataset):
    """Micro step ``i`` of the rest of a run, counted from micro step ``first`` (step × accum + micro)."""

    def __init__(self, batches: Batches, first: int, last: int):
        self.batches, self.first, self.last = batches, first, last

    def __len__(self) -> int:
        return self.last - self.first

    def __getitem__(self, i: int) -> Pair:
        return self.batches.get(*divmod(self.first + i, self.batches.accum))


class Loader:
    """``get(step, micro)`` like :class:`Batches`, served by ``workers`` DataLoader processes that each keep
    ``prefetch`` micro batches ready (0 workers: built on the training thread). ``wait_s`` is the time spent
    waiting in ``get``: a rank whose data cannot keep up shows it there."""

    def __init__(self, batches: Batches, steps: int, workers: int, prefetch: int, pin: bool):
        self.batches, self.steps, self.workers, self.prefetch, self.pin = batches, steps, workers, prefetch, pin
        self.wait_s = 0.0
        self._iterator: Iterator[Pair] | None = None
        self._next = -1  # the micro step the iterator yields next

    def get(self, step: int, micro: int) -> Pair:
        began = time.perf_counter()
        try:
            return self._serve(step * self.batches.accum + micro) if self.workers else self.batches.get(step, micro)
        finally:
            self.wait_s += time.perf_counter() - began

    def _serve(self, index: int) -> Pair:
        if index != self._next:  # the first call, or a caller that skipped ahead: the workers start there
            self._start(index)
        self._next = index + 1
        return next(self._iterator)

    def _start(self, index: int) -> None:
        self.close()
        steps = _MicroSteps(self.batches, index, max(self.steps * self.batches.accum, index + 1))
        loader = DataLoader(steps, batch_size=None, num_workers=self.workers, prefetch_factor=self.prefetch,
                            pin_memory=self.pin)
        self._iterator = iter(loader)

    def close(self) -> None:
        """Stop the workers now (they also stop by themselves when this process ends)."""
        shutdown = getattr(self._iterator, "_shutdown_workers", None)  # what the iterator's __del__ calls
        if shutdown is not None:
            shutdown()
        self._iterator = None
        self._next = -1
