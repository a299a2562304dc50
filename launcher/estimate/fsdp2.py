"""torch FSDP2's memory, read from its rendered settings: ``fully_shard`` per decoder layer and on the root,
mixed precision, CPU offload, tensor parallelism.

Ψ parameters over N data-parallel ranks and T tensor-parallel ranks. A Llama block's projections are split
over T (its norms are not); embeddings, the final norm and the head are not split. FSDP2 keeps the sharded
parameters in fp32 (S: this rank's share), with fp32 sharded gradients and two fp32 Adam moments: 16S in
all, no separate master copy. For compute it all-gathers each layer into a p-byte copy (p = 2 under bf16
mixed precision, else 4): the root's stays gathered from forward through backward; a layer's is freed after
its forward with ``reshard_after_forward`` (two in flight: the one computing and the one prefetched) or
kept until its backward without. The sharded gradients grow as backward frees the activations, so they
count at the optimizer step, not on top of the activations. Backward makes a layer's unsharded gradient
(p bytes) and, with an fp32 ``reduce_dtype`` under bf16, its fp32 cast for the reduce-scatter.
Activations are counted as with 16-bit weights (no autocast cache) and whole on every tensor-parallel rank
(an upper bound: the heads and MLP columns a rank computes are 1/T of them). ``CPUOffloadPolicy`` moves
the sharded parameters, gradients and optimizer states to host RAM (on CPU ranks that is the rank's own
memory, so they stay counted).
"""

from __future__ import annotations

from ..render import RenderedConfig
from ..spec.models import ModelShape
from . import Breakdown, Workload, phased
from .activations import Activations, mode_of
from .dataparallel import STEP_SCRATCH_COPIES

IN_FLIGHT_LAYERS = 2  # gathered at once with reshard_after_forward: the layer computing and the prefetched one


def estimate(rendered: RenderedConfig, work: Workload) -> Breakdown:
    """One rank of FSDP2 (× tensor parallel)."""
    f, t = rendered.config["fsdp"], rendered.config["training"]
    m, dp, tp = work.model, rendered.data_parallel_size, f["tp"]
    p = 2 if t["precision"] == "bf16" else 4
    share = _local(m, tp) // dp + 1  # this rank's shard of the parameters (rounded up)
    params, grads, optimizer = 4 * share, 4 * share, 8 * share
    layers = m.layers if not f["reshard_after_forward"] else min(IN_FLIGHT_LAYERS, m.layers)
    gathered = p * (_root(m) + layers * _layer(m, tp))
    unsharded_grads = (p + (4 if p == 2 and f["reduce_dtype"] == "fp32" else 0)) * _layer(m, tp)
    act = Activations.of(work, mode_of(t["precision"], True), t["activation_checkpointing"])
    acts, loss_backward = act.total(), act.loss_backward()
    scratch = STEP_SCRATCH_COPIES * 4 * -(-m.largest_tensor() // dp) if work.cpu else 0
    buffers, temporaries = gathered + unsharded_grads, loss_backward + scratch
    parts = (params, grads, optimizer, acts, buffers, temporaries)
    backward = acts + loss_backward + buffers  # sharded gradients grow as the activations are freed
    if f["offload"] and not work.cpu:  # the GPU keeps only what it computes with
        return phased(0, 0, 0, acts, buffers, temporaries, resident=0, backward=backward, step=0,
                      offload_cpu=params + grads + optimizer)
    return phased(*parts, resident=params + optimizer, backward=backward, step=grads + scratch)


def _layer(m: ModelShape, tp: int) -> int:
    """One decoder layer's parameters on one tensor-parallel rank: its split projections, its norms whole."""
    split = m.layer_params() - 2 * m.norm_params
    return split // tp + 2 * m.norm_params


def _root(m: ModelShape) -> int:
    """What the root's ``fully_shard`` holds: embeddings, the final norm and the head."""
    return m.params() - m.layers * m.layer_params()


def _local(m: ModelShape, tp: int) -> int:
    return _root(m) + m.layers * _layer(m, tp)
