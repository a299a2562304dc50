"""The Ray job: what the plan hands the driver, as one JSON file in the run record. Stdlib only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

FILE = "ray-job.json"  # its name in the run record


@dataclass(frozen=True)
class RayJob:
    """Everything the driver needs: where the cluster is, how many workers with what resources, how Ray starts
    them (``runner``), and what each rank runs: ``agent`` (launchdeck's per-rank agent, without its ``--``)
    around ``command``, in ``cwd`` with ``env`` set on top of the worker's own."""

    address: str  # "auto" or the head's HOST:PORT
    world_size: int
    runner: Literal["torch", "horovod"]
    cpus_per_worker: float
    gpus_per_worker: float
    agent: list[str]
    command: list[str]
    cwd: str
    run_dir: str
    env: dict[str, str] = field(default_factory=dict)
    network_interface: str | None = None  # Horovod's rendezvous NIC (--network-interface)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def read(cls, path: str | Path) -> RayJob:
        return cls(**json.loads(Path(path).read_text()))
