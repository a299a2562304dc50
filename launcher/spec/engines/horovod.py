"""Horovod: its own collectives (gloo or MPI controller), started by horovodrun, also on one machine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..strategy import Horovod
from . import EngineSpec, Knob


def missing_here() -> str | None:
    """A real Horovod build (its compiled torch extension), not just the importable runner."""
    spec = importlib.util.find_spec("horovod")
    built = bool(spec and spec.submodule_search_locations) and any(
        (Path(next(iter(spec.submodule_search_locations))) / "torch").glob("mpi_lib_v2*.so"))
    return None if built else ("Horovod with its compiled PyTorch extension is not installed; `make horovod` "
                               "builds it (render and --dry-run work without it)")


SPEC = EngineSpec(
    name="horovod",
    description="Horovod allreduce with Tensor Fusion (gloo or MPI controller)",
    renderer="launcher.render.horovod:render",
    estimator="launcher.estimate.dataparallel:horovod",
    tunable={"horovod.fusion_threshold_mb": Knob(1, 128, integer=True), "horovod.cycle_time_ms": Knob(1, 100)},
    sections=frozenset({"horovod"}),
    defaults={"horovod": Horovod()},
    payload="launcher.payload.train.engines.horovod",
    local_launcher="horovodrun",
    ray_runner="horovod",
    host_packages=("horovod",),
    k8s_kinds=("mpijob",),  # Horovod's ranks start under MPI
    missing_here=missing_here,
)
