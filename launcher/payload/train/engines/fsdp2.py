"""torch FSDP2: ``fully_shard`` on every decoder layer and the root over the data-parallel mesh dimension,
DTensor tensor parallelism inside each Llama block over the tensor-parallel one, sharded checkpoints
through ``torch.distributed.checkpoint`` (resharded on load: they resume at any data-parallel size)."""

from __future__ import annotations

import os

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from .. import schedule
from ..comm import Comm, TorchComm
from ..pipeline_model import lm_loss
from ..runtime import Runtime
from . import accum_for, data_parallel_at, loads_anywhere, params_digest, training_shape
from .ddp import _optimizer

SHARDS = "dcp"  # the checkpoint's sharded model and optimizer (torch.distributed.checkpoint)
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
# DTensor tensor parallelism on a Llama block: column-split the projections in, row-split the ones out
TP_PLAN = {**{f"self_attn.{p}": ColwiseParallel() for p in ("q_proj", "k_proj", "v_proj")},
           "self_attn.o_proj": RowwiseParallel(),
           **{f"mlp.{p}": ColwiseParallel() for p in ("gate_proj", "up_proj")},
           "mlp.down_proj": RowwiseParallel()}


def connect(rt: Runtime) -> Comm:
    return TorchComm(rt)


class FSDP2Engine:
    """A Llama sharded by FSDP2 (and split by DTensor tensor parallelism) with AdamW, the LR schedule,
    gradient accumulation without reduce-scatter until the last micro step, and global-norm clipping."""

    identical_replicas = True  # the digest is of the full (gathered) parameters

    def __init__(self, config: dict, model: torch.nn.Module, context):
        f, t, rt = config["fsdp"], config["training"], context.runtime
        self.training, self.device = t, rt.device
        mesh = init_device_mesh(rt.device.type, (t["data_parallel_size"], f["tp"]), mesh_dim_names=("dp", "tp"))
        self.data_parallel_rank, self.data_parallel_size = mesh["dp"].get_local_rank(), mesh["dp"].size()
        self.batches = context.batches(self.data_parallel_rank, self.data_parallel_size)  # tp ranks: same data
        if f["tp"] > 1:
            _tensor_parallel(model, mesh["tp"])
        if t["activation_checkpointing"]:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = _shard(model, mesh["dp"], f, t["precision"], rt)
        self.optimizer = _optimizer(t["optimizer"], self.model.parameters(), rt.device.type == "cuda" and not
                                    f["offload"])
        self.scheduler = schedule.scheduler(self.optimizer, t["scheduler"])

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    def train_step(self, step: int) -> float:
        accum, total = self.training["grad_accum"], 0.0
        for micro in range(accum):
            inputs, labels = (t.to(self.device, non_blocking=True) for t in self.batches.get(step, micro))
            self.model.set_requires_gradient_sync(micro == accum - 1)  # reduce-scatter once per step
            loss = lm_loss(self.model(input_ids=inputs).logits, labels)
            (loss / accum).backward()
            total += loss.item()
        if self.training["grad_clip"] > 0:
            clip_grad_norm(self.model.parameters(), self.training["grad_clip"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / accum

    def save(self, directory: str, step: int) -> None:
        """Every rank writes its shards (DCP); rank 0 the schedule and the step."""
        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=os.path.join(directory, SHARDS))
        if torch.distributed.get_rank() == 0:
            torch.save({"scheduler": self.scheduler.state_dict(), "step": step}, os.path.join(directory, "state.pt"))

    def load(self, directory: str) -> int:
        """DCP reads the shards this rank's mesh needs, whatever the mesh was at save time."""
        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        state = {"model": model_state, "optimizer": optimizer_state}
        dcp.load(state, checkpoint_id=os.path.join(directory, SHARDS))
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"])
        rest = torch.load(os.path.join(directory, "state.pt"), map_location="cpu", weights_only=True)
        self.scheduler.load_state_dict(rest["scheduler"])
        return int(rest["step"])

    def digest(self) -> str:
        """Of the full parameters: every rank gathers each one (a collective, in the same order everywhere)."""
        return params_digest((name, _full(p)) for name, p in self.model.named_parameters())

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def close(self) -> None:
        self.model = self.optimizer = self.scheduler = None


def _tensor_parallel(model: torch.nn.Module, mesh: DeviceMesh) -> None:
    for layer in model.model.layers:
        parallelize_module(layer, mesh, TP_PLAN)


def _shard(model: torch.nn.Module, mesh: DeviceMesh, f: dict, precision: str, rt: Runtime) -> torch.nn.Module:
    """``fully_shard`` each decoder layer, then the root (embeddings, final norm, head)."""
    mixed = MixedPrecisionPolicy(param_dtype=DTYPES[precision], reduce_dtype=DTYPES[f["reduce_dtype"]]) \
        if precision == "bf16" else MixedPrecisionPolicy()
    offload = CPUOffloadPolicy(pin_memory=rt.device.type == "cuda") if f["offload"] else OffloadPolicy()
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=f["reshard_after_forward"], mp_policy=mixed,
                    offload_policy=offload)
    return fully_shard(model, mesh=mesh, reshard_after_forward=f["reshard_after_forward"], mp_policy=mixed,
                       offload_policy=offload)


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Clip to the global norm over every gradient. Under FSDP × TP gradients live on two meshes (the 2-D one
    of split layers, the data-parallel one of the rest), which torch's clip cannot mix: one norm per mesh and
    layout, each reduced over its mesh (a scalar all-reduce), then combined."""
    by_mesh: dict[object, list[torch.nn.Parameter]] = {}
    for p in parameters:
        if p.grad is not None:
            layout = (p.grad.device_mesh, p.grad.placements) if isinstance(p.grad, DTensor) else None
            by_mesh.setdefault(layout, []).append(p)
    norms = [_full(torch.nn.utils.get_total_norm([p.grad for p in group])) for group in by_mesh.values()]
    total = torch.linalg.vector_norm(torch.stack(norms))
    for group in by_mesh.values():
        torch.nn.utils.clip_grads_with_norm_(group, max_norm, total)  # parameters: it scales their .grad
    return total


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def at_world(config: dict, world_size: int) -> dict:
    """The config at ``world_size`` ranks: the data-parallel size changes, tensor parallelism stays."""
    f, t = config["fsdp"], config["training"]
    if t["world_size"] == world_size:
        return config
    dp = data_parallel_at(world_size, f["tp"], "fsdp.tp")
    accum = accum_for(t["global_batch"], t["micro_batch"], dp)
    return {**config, "training": {**t, "grad_accum": accum, "world_size": world_size, "data_parallel_size": dp}}


shape = training_shape  # the engine-neutral training block
resumable = loads_anywhere  # DCP reshards on load
create = FSDP2Engine
