"""``python -m launcher.raycluster.driver RUN_DIR/ray-job.json``: the Ray driver of one launch, started by the
executor on this machine (which must be a node of the cluster, as for every Ray driver).

It attaches to the cluster, listens for the workers' output (:mod:`.worker`), and has Ray start one worker per
rank: Ray Train's ``TorchTrainer`` (placement group, process group, failure reports) for the torch engines,
Horovod's ``RayExecutor`` for Horovod. Whatever the workers relay goes to stdout, where the launcher reads its
agents' events as from any transport. SIGTERM/SIGINT/SIGHUP end this driver, and with it, by Ray's rule for a
driver's job, every actor of this job and nothing else on the cluster.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from . import worker
from .job import RayJob

JOIN_S = 5.0  # how long the last lines of the workers may take to arrive after they ended
PREFIX = "launchdeck ray: "


class Cancelled(BaseException):
    """The driver was asked to stop (the launcher stops the job, or the user pressed Ctrl-C); a BaseException, so
    that no library's `except Exception` swallows it."""


class Relay:
    """The driver's end of the workers' output: a TCP listener; every line of every connection goes to stdout
    whole (a lock keeps two ranks' lines apart)."""

    def __init__(self, host: str) -> None:
        self.server = socket.create_server(("", 0))
        self.address = (host, self.server.getsockname()[1])
        self.lock = threading.Lock()
        self.pumps: list[threading.Thread] = []
        self.first: float | None = None  # when the first worker connected: Ray had placed and started it
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self.server.accept()
            self.first = self.first or time.monotonic()
            pump = threading.Thread(target=self._pump, args=(conn,), daemon=True)
            self.pumps.append(pump)
            pump.start()

    def _pump(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            for line in stream:
                with self.lock:
                    sys.stdout.buffer.write(line)
                    sys.stdout.buffer.flush()

    def drain(self) -> None:
        for pump in list(self.pumps):
            pump.join(JOIN_S)


def facing(address: str) -> str | None:
    """This machine's address on the route to the head (None for "auto"): Ray attaches the driver to the node
    with that address, not to whichever raylet it finds first."""
    if address == "auto":
        return None
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, int(port)))
        return probe.getsockname()[0]


def attach(address: str, network_interface: str | None = None) -> str:
    """``ray.init`` on this machine's node; returns that node's address. ``network_interface``: the NIC the job's
    workers talk on (Ray Train's own gloo group too, which is made before any of our code runs there)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    nics = {"GLOO_SOCKET_IFNAME": network_interface, "NCCL_SOCKET_IFNAME": network_interface}
    ray.init(address=address, _node_ip_address=facing(address), logging_level="WARNING", log_to_driver=False,
             runtime_env={"env_vars": nics} if network_interface else None)
    return ray.util.get_node_ip_address()


def run_torch(job: RayJob, relay: tuple[str, int]) -> None:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    resources = {"CPU": job.cpus_per_worker, **({"GPU": job.gpus_per_worker} if job.gpus_per_worker else {})}
    scaling = ScalingConfig(num_workers=job.world_size, use_gpu=bool(job.gpus_per_worker),
                            resources_per_worker=resources)
    run = RunConfig(name=Path(job.run_dir).name, storage_path=str(Path(job.run_dir) / "ray"),
                    failure_config=FailureConfig(max_failures=0))  # launchdeck's --max-restarts restarts, not Ray
    # Ray's own group only agrees on the ranks' rendezvous: gloo, which holds no GPU memory
    trainer = TorchTrainer(worker.torch_worker, train_loop_config=worker.config(job, relay), scaling_config=scaling,
                           torch_config=TorchConfig(backend="gloo"), run_config=run)
    trainer.fit()


def run_horovod(job: RayJob, relay: tuple[str, int]) -> None:
    from horovod.ray import RayExecutor

    nics = {job.network_interface} if job.network_interface else None
    settings = RayExecutor.create_settings(timeout_s=30, nics=nics)
    executor = RayExecutor(settings, num_workers=job.world_size, cpus_per_worker=max(1, int(job.cpus_per_worker)),
                           use_gpu=bool(job.gpus_per_worker), gpus_per_worker=int(job.gpus_per_worker) or None)
    executor.start()
    try:
        executor.run(worker.horovod_worker, args=[worker.config(job, relay)])
    finally:
        executor.shutdown()


RUNNERS = {"torch": run_torch, "horovod": run_horovod}


def _cancel(signum: int, _frame: FrameType | None) -> None:
    raise Cancelled(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    job = RayJob.read((argv or sys.argv[1:])[0])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _cancel)
    began = time.monotonic()
    try:
        relay = Relay(attach(job.address, job.network_interface))
        attached = time.monotonic()
        RUNNERS[job.runner](job, relay.address)
        relay.drain()
        print(f"{PREFIX}{_phases(began, attached, relay.first, time.monotonic())}", file=sys.stderr, flush=True)
        return 0
    except Cancelled as stop:
        print(f"{PREFIX}{stop}: cancelling this job's workers on the cluster", file=sys.stderr, flush=True)
        return 130 if str(stop) == "SIGINT" else 143
    except Exception as error:  # a worker failed: the agents' events name the rank; this is the driver's line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"{PREFIX}the job failed: {first}", file=sys.stderr, flush=True)
        return 1
    finally:
        _shutdown()


def _phases(began: float, attached: float, first: float | None, done: float) -> str:
    """Where the driver's time went: attaching, Ray placing and starting the workers, the ranks' run."""
    placed = f"first worker up {first - attached:.1f} s later, " if first else ""
    return f"attached in {attached - began:.1f} s, {placed}done {done - (first or attached):.1f} s after that"


def _shutdown() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second stop must not interrupt the shutdown itself
    import ray

    ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
