"""The few collectives the loop itself needs (barrier, gather, shutdown), per engine family.

torch.distributed for DDP and DeepSpeed; Horovod's own for Horovod (horovodrun starts no torch
process group). Each payload engine module's ``connect`` picks one.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any, Protocol

from .runtime import Runtime


class Comm(Protocol):
    """The collectives the loop itself uses, whatever the engine."""

    def barrier(self) -> None: ...
    def gather(self, obj: Any) -> list[Any]: ...
    def shutdown(self, engine: Any) -> None: ...


class TorchComm:
    """torch.distributed collectives, for engines that train on a torch process group (``init`` joins it)."""

    def __init__(self, rt: Runtime, init: Callable[[str], None] | None = None):
        import torch.distributed as dist

        self.dist, self.world = dist, rt.world_size
        (init or dist.init_process_group)(rt.backend)

    def barrier(self) -> None:
        self.dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        out = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out

    def shutdown(self, engine: Any) -> None:
        """Tear distributed state down while Python is fully alive.

        Left to interpreter exit, the process group (still referenced by DDP's reducer or DeepSpeed's
        engine) is destroyed during finalization, and a C++ thread of torch's distributed runtime can
        be destroyed while joinable: std::terminate, "terminate called without an active exception",
        SIGABRT (rc 250 under DeepSpeed's launcher). So: release the engine, collect, destroy the group.
        """
        engine.close()
        gc.collect()
        self.dist.barrier()
        self.dist.destroy_process_group()


class HorovodComm:
    """Horovod's own collectives (horovodrun starts no torch process group)."""

    def __init__(self, rt: Runtime):
        import horovod.torch as hvd

        self.hvd = hvd
        hvd.init()

    def barrier(self) -> None:
        self.hvd.barrier()

    def gather(self, obj: Any) -> list[Any]:
        return self.hvd.allgather_object(obj)

    def shutdown(self, engine: Any) -> None:
        engine.close()
        gc.collect()
        self.hvd.barrier()
        self.hvd.shutdown()

