"""What one rank's memory holds during a training step, measured from the tensors themselves.

torch's ``MemTracker`` (a dispatch mode: it sees every tensor an op creates, on CPU as on GPU) runs while
the engine is built and during the measured steps, so the peak of a step includes everything the engine
allocated before it (flat buffers, master weights, optimizer states). The peak is the tracker's, and on a
GPU the CUDA allocator's ``max_memory_allocated`` too. The parts are read from the objects that own them:
parameters (this rank's shards included), gradients and optimizer state as they stand when the optimizer
steps; ``activations`` is what the forward pass holds at the peak; ``buffers`` is the rest of the peak
(communication buckets, gathered parameters, temporaries: the estimate's ``buffers`` + ``temporaries``).
Keys match ``launchdeck estimate``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType
from torch.distributed.tensor import DTensor
from torch.optim.optimizer import register_optimizer_step_pre_hook

MEASURED_STEP = 1  # the second step: the first builds optimizer states and kernels


class StepTracker(MemTracker):
    """``MemTracker`` that lets the root module run forward more than once in a tracked region (gradient
    accumulation, pipeline micro batches): per-module statistics restart, the totals and the peak go on."""

    def _pre_fw_hook(self, module: torch.nn.Module, inputs) -> None:
        name = self._mod_tracker.get_known_fqn(module)
        again = module in self.memory_tracking and not self._mod_tracker.is_bw
        if again and set(self._mod_tracker.parents) - {name} == {"Global"}:
            self.reset_mod_stats()
        super()._pre_fw_hook(module, inputs)


def storage_bytes(tensors: Iterable[torch.Tensor], seen: set[int]) -> int:
    """Bytes of the distinct storages behind ``tensors`` not in ``seen`` (which it extends); a DTensor (FSDP2's
    sharded parameters) counts this rank's local shard."""
    total = 0
    for tensor in tensors:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            continue
        if isinstance(tensor, DTensor):
            tensor = tensor.to_local()
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() == 0:
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return total


def rank_params(module: torch.nn.Module) -> list[torch.Tensor]:
    """This rank's parameter tensors: ZeRO-3 keeps its shard in ``ds_tensor`` (the parameter itself is empty),
    ZeRO++ hpZ a second one in ``ds_secondary_tensor``."""
    return [t for p in module.parameters() for t in (p, getattr(p, "ds_tensor", None),
                                                     getattr(p, "ds_secondary_tensor", None)) if t is not None]


class MemoryProbe:
    """Measures a rank's memory: tracks the engine's construction and one training step, then reports the
    step's peak and its parts in the estimate's keys (bytes)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.tracker = StepTracker()
        self.at_step: dict[str, int] = {}
        self.start: dict[str, int] = {}
        self.optimizers: list[torch.optim.Optimizer] = []
        self.masters: dict[int, torch.Tensor] = {}  # what the optimizer steps (ZeRO-3 swaps them in per step)
        self.module: torch.nn.Module | None = None

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """Track what the engine allocates while it is built (it stays alive through every step)."""
        with self.tracker:
            yield

    @contextlib.contextmanager
    def step(self, module: torch.nn.Module, measured: bool) -> Iterator[None]:
        """Track one step; ``measured``: the step whose peak is reported (the peak restarts here)."""
        self.module = module
        self.tracker.reset_mod_stats()
        hook = register_optimizer_step_pre_hook(self._at_optimizer_step) if measured else None
        if measured and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            with self.tracker:
                if measured:
                    self.start = self._current()
                yield
        finally:
            if hook is not None:
                hook.remove()

    def _current(self) -> dict[str, int]:
        snap = self.tracker.get_tracker_snapshot("current")
        return {str(k): v for k, v in snap.get(self.device, {}).items()}

    def _at_optimizer_step(self, optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        if optimizer not in self.optimizers:
            self.optimizers.append(optimizer)
        seen: set[int] = set()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.masters.update((id(p), p) for p in params)
        module_params = list(self.module.parameters()) if self.module is not None else []
        grads = storage_bytes((p.grad for p in [*params, *module_params] if p.grad is not None), seen)
        self.at_step["grads"] = max(self.at_step.get("grads", 0), grads)

    def report(self) -> dict[str, int] | None:
        """The measured step's peak and its parts, in bytes (None: the run ended before that step)."""
        if not self.start:
            return None
        peak_snap = {str(k): v for k, v in self.tracker.get_tracker_snapshot("peak").get(self.device, {}).items()}
        seen: set[int] = set()
        params = storage_bytes(rank_params(self.module), seen) if self.module is not None else 0
        optimizer = storage_bytes(self._optimizer_tensors(), seen)
        activations = peak_snap.get(str(_MemRefType.ACT), 0) - self.start.get(str(_MemRefType.ACT), 0)
        peak = peak_snap.get("Total", 0)
        if self.device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(self.device))
        grads = self.at_step.get("grads", 0)
        # the rest of the peak; gradients that only live at the step (Horovod's) are not part of it
        buffers = max(0, peak - params - grads - optimizer - activations)
        return {"params": params, "grads": grads, "optimizer": optimizer, "activations": activations,
                "buffers": buffers, "peak": peak}

    def _optimizer_tensors(self) -> Iterator[torch.Tensor]:
        """Optimizer states and the master weights it steps (where they are not the model's own)."""
        for optimizer in self.optimizers:
            for state in optimizer.state.values():
                yield from (v for v in state.values() if isinstance(v, torch.Tensor))
        yield from self.masters.values()
