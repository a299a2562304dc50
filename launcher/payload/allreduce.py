"""``python -m launcher.payload.allreduce``: the doctor's tiny job. Every rank joins the process group, sums
its rank + 1 across the world, times a 4 MB all-reduce, and rank 0 writes ``allreduce.json`` into the
run directory. Exit code 0 only when the sum is right.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

from ..node import rankenv

JOIN_TIMEOUT = timedelta(seconds=60)
BIG = 1 << 20  # floats: 4 MB


def main() -> int:
    import torch
    import torch.distributed as dist

    rankenv.adopt(os.environ)  # under mpirun / horovodrun
    gpu = torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR") != "cpu"
    started = time.perf_counter()
    dist.init_process_group("nccl" if gpu else "gloo", timeout=JOIN_TIMEOUT)
    joined_s = time.perf_counter() - started
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if gpu else torch.device("cpu")
    total = torch.tensor([float(rank + 1)], device=device)
    dist.all_reduce(total)
    big_ms = _time_big(dist, torch, device)
    hosts: list[str | None] = [None] * world
    dist.all_gather_object(hosts, socket.gethostname())
    ok = total.item() == world * (world + 1) / 2
    if rank == 0:
        result = {"world_size": world, "sum": total.item(), "expected": world * (world + 1) / 2, "ok": ok,
                  "hosts": hosts, "backend": dist.get_backend(), "join_s": round(joined_s, 3),
                  "allreduce_4mb_ms": round(big_ms, 2)}
        Path(os.environ["LAUNCHDECK_RUN_DIR"], "allreduce.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"all-reduce across {world} ranks: sum {total.item():g} (expected {result['expected']:g})", flush=True)
    dist.barrier()
    dist.destroy_process_group()
    return 0 if ok else 1


def _time_big(dist, torch, device, repeats: int = 5) -> float:
    buffer = torch.ones(BIG, device=device)
    dist.all_reduce(buffer)  # warm-up: connections and buffers
    started = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce(buffer)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats * 1000


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # skip interpreter finalization (see launcher.payload.train.comm.TorchComm.shutdown)
