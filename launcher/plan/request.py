"""What a caller asks for: one typed request, built once (by the CLI, doctor, a benchmark or a test)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def with_steps(overrides: Iterable[str], steps: int | None) -> list[str]:
    """``--set`` entries, then ``--steps`` as ``training.steps`` (a flag beats the YAML, applied last)."""
    return [*overrides, *([f"training.steps={steps}"] if steps else [])]


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a launch is asked to do, before any decision: the strategy and its overrides, the
    payload's options (or a script), the hosts and transport, the watchdog's timeouts.

    ``None`` means "decide for me" (ranks: all visible GPUs or 2 CPU ranks; transport: ssh with a hostfile,
    else this machine; run directory: ``runs_root/<UTC time>-<strategy>``). Never modified after creation:
    :func:`launcher.plan.prepare.prepare` turns it into a plan."""

    strategy: str
    overrides: tuple[str, ...] = ()  # --set entries, applied in order after the strategy's YAML
    nproc: int | None = None  # ranks on this machine (local transport)
    cpu: bool = False  # CPU ranks with gloo even where GPUs are visible
    steps: int | None = None
    model: str = "tiny"  # the payload's model preset
    data: str | None = None  # the payload's text (default: Python's own sources)
    seq_len: int | None = None
    data_workers: int = 1  # the payload's DataLoader processes per rank
    prefetch: int = 2  # micro batches each of them keeps ready
    run_dir: str | None = None
    runs_root: str = "runs"
    save_every: int = 0
    resume: str | None = None  # a run directory, a checkpoint directory, or "last"
    crash_at: str | None = None  # fault drill RANK:STEP
    stall_at: str | None = None  # fault drill RANK:STEP: that rank blocks, the others wait in a collective
    measure_memory: bool = False  # the payload measures a step's memory per rank into result.json
    script: tuple[str, ...] = ()  # the user's script and its arguments, instead of the payload
    hostfile: str | None = None
    include: str | None = None
    exclude: str | None = None
    launcher: str | None = None  # the transport (--launcher)
    ray_address: str | None = None  # --launcher ray: the head's HOST:PORT, or "auto" (the cluster this machine is in)
    master_addr: str | None = None
    master_port: int | None = None
    ssh_port: int | None = None
    ssh_key: str | None = None
    network_interface: str | None = None
    env: tuple[str, ...] = ()  # --env NAME=VALUE for every rank on every host
    attempt: int = 1  # with --max-restarts: which attempt this is (LAUNCHDECK_ATTEMPT; a restart's own port)
    hang_timeout: float = 5.0  # seconds a rank may stay stopped before it is killed (0: never)
    heartbeat_timeout: float = 10.0  # seconds an agent may stay silent before its node counts as lost
    stall_timeout: float | None = None  # seconds no rank may make progress (None: adaptive; 0: never)
    max_restarts: int = 0  # starts again from the run's latest checkpoint after a failure, up to this many times
    min_nodes: int | None = None  # with restarts: leave lost or failing nodes out while this many remain
