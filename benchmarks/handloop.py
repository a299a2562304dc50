"""The minimal hand-written training loop `make bench` holds the payload against (run under torchrun).

Same model, batches and rendered config as the payload, none of its machinery: no meter, no memory
probe, no checkpoints, no digests. Times each step (forward, backward, optimizer step, loss read back)
the way the payload does and writes steps/s over the steps after the first to OUT.

    torchrun --nproc-per-node 2 benchmarks/handloop.py ENGINE CONFIG STEPS OUT
"""

from __future__ import annotations

import json
import os
import sys
import time

import deepspeed
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from launcher.payload.train.data import Batches, load_corpus, token_ids
from launcher.payload.train.model import build_model
from launcher.payload.train.pipeline_model import lm_loss
from launcher.payload.train.runtime import set_cpu_threads


def ddp_step(config: dict, model, batches: Batches):
    """A DDP step as a user would write it: autocast, backward, clip, AdamW (no LR schedule)."""
    t = config["training"]
    ddp = DistributedDataParallel(model, **config["ddp"])
    o = t["optimizer"]
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"],
                                  weight_decay=o["weight_decay"])
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t["precision"])

    def step(index: int) -> float:
        inputs, labels = batches.get(index, 0)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = lm_loss(ddp(input_ids=inputs).logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), t["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def deepspeed_step(config: dict, model, batches: Batches):
    """A DeepSpeed step straight from its tutorial: engine(batch), engine.backward, engine.step."""
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)

    def step(index: int) -> float:
        inputs, labels = batches.get(index, 0)
        loss = lm_loss(engine(input_ids=inputs).logits, labels)
        engine.backward(loss)
        engine.step()
        return loss.item()

    return step


def main() -> int:
    engine, config_path, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    config = json.loads(open(config_path).read())
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    set_cpu_threads_for(rank)
    shape = config["training"] if engine == "ddp" else {"micro_batch": config["train_micro_batch_size_per_gpu"],
                                                        "grad_accum": config["gradient_accumulation_steps"]}
    assert shape["grad_accum"] == 1, "the hand loop does one micro batch per step"
    micro = shape["micro_batch"]
    batches = Batches(token_ids(load_corpus(None)), 128, micro, 1234, rank, dist.get_world_size())
    model = build_model("tiny", 128, 1234)
    step = (ddp_step if engine == "ddp" else deepspeed_step)(config, model, batches)
    seconds = []
    for index in range(steps):
        began = time.perf_counter()
        step(index)
        seconds.append(time.perf_counter() - began)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"steps_per_s": (steps - 1) / sum(seconds[1:]), "step_seconds": seconds}, f)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)


def set_cpu_threads_for(rank: int) -> None:
    """The payload's thread rule (cores ÷ local ranks), so both sides run with the same threads."""
    from launcher.payload.train.runtime import Runtime

    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    set_cpu_threads(Runtime(rank, rank, local, local, torch.device("cpu"), "gloo"))


if __name__ == "__main__":
    sys.exit(main())
