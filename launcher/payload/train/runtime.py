"""Where this rank runs: rank/world from the launcher's env, device, backend, threads."""

from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import dataclass

import torch

from ...node import rankenv
from ...node.probe import cpu_threads

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Runtime:
    """Where this rank runs: its place in the job, its device and its process-group backend."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect(backends: dict[str, str], force_cpu: bool = False) -> Runtime:
    """Read RANK/WORLD_SIZE/LOCAL_RANK (set by torchrun); one GPU per rank; the engine's backend for the device
    (``backends``: ``{"cpu": "gloo", "gpu": "nccl"}``, from the engine registry)."""
    rankenv.adopt(os.environ)  # under mpirun / horovodrun ranks come as OMPI_COMM_WORLD_* / HOROVOD_*
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if torch.cuda.is_available() and not force_cpu:
        torch.cuda.set_device(local_rank)
        return Runtime(rank, local_rank, world, local_world, torch.device("cuda", local_rank), backends["gpu"])
    return Runtime(rank, local_rank, world, local_world, torch.device("cpu"), backends["cpu"])


def set_cpu_threads(runtime: Runtime) -> int:
    """cores ÷ local ranks intra-op threads (unset, ranks oversubscribe the cores and crawl)."""
    threads = int(os.environ.get("OMP_NUM_THREADS") or cpu_threads(runtime.local_world_size))
    torch.set_num_threads(threads)
    return threads


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this rank if its launcher dies, so a killed launcher leaves no orphans."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the launcher's own teardown still applies
        pass
