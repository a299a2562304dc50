"""Replicated data parallelism (torch DDP, Horovod): every rank holds the whole model in fp32.

Ψ parameters: fp32 weights (4Ψ), fp32 gradients (4Ψ), two fp32 Adam moments (8Ψ) — the ZeRO paper's 16Ψ
with fp32 weights, no 16-bit copy. With bf16/fp16 the step runs under autocast, which caches a 16-bit
copy of every weight (2Ψ) while forward and backward run. DDP's buckets (``bucket_cap_mb``) are made
once; with ``gradient_as_bucket_view`` the gradients live in them, otherwise beside them. Horovod's
gradients are made by each backward and freed after the step; on GPUs its fusion buffer
(``HOROVOD_FUSION_THRESHOLD``) is device memory too. On GPUs the optimizer is torch's fused AdamW (no
scratch); on CPU ranks it steps tensor by tensor (scratch: a few copies of the largest tensor).
"""

from __future__ import annotations

from ..render import RenderedConfig
from . import Breakdown, Workload, phased
from .activations import Activations, mode_of

STEP_SCRATCH_COPIES = 3  # fp32 copies of one tensor the for-loop AdamW makes (CPU ranks)


def ddp(rendered: RenderedConfig, work: Workload) -> Breakdown:
    """One rank of torch DDP."""
    config = rendered.config
    psi = work.model.params()
    act = _activations(config, work)
    buckets = 0 if config["ddp"].get("gradient_as_bucket_view") else 4 * psi
    grads, scratch = 4 * psi, _step_scratch(work)
    acts, loss_backward = act.total(), act.loss_backward()
    return phased(4 * psi, grads, 8 * psi, acts, buckets, loss_backward + scratch,
                  resident=12 * psi + grads + buckets, backward=acts + loss_backward, step=scratch)


def horovod(rendered: RenderedConfig, work: Workload) -> Breakdown:
    """One rank of Horovod's DistributedOptimizer."""
    config = rendered.config
    psi = work.model.params()
    act = _activations(config, work)
    fusion = 0 if work.cpu else int(config["env"].get("HOROVOD_FUSION_THRESHOLD", 64 * 2**20))
    compressed = 2 * psi if config["optimizer_wrapper"].get("compression") == "fp16" else 0
    grads, scratch = 4 * psi, _step_scratch(work) + compressed
    acts, loss_backward = act.total(), act.loss_backward()
    return phased(4 * psi, grads, 8 * psi, acts, fusion, loss_backward + scratch,
                  resident=12 * psi + fusion, backward=acts + loss_backward, step=grads + scratch)


def _activations(config: dict, work: Workload) -> Activations:
    t = config["training"]
    return Activations.of(work, mode_of(t["precision"], False), t["activation_checkpointing"])


def _step_scratch(work: Workload) -> int:
    return STEP_SCRATCH_COPIES * 4 * work.model.largest_tensor() if work.cpu else 0
