"""``python -m launcher.raycluster.driver RUN_DIR/ray-job.json``: the Ray driver of one launch, started by the
executor on this machine (which must be a node of the cluster, as for every Ray driver).

It attaches to the cluster, listens for the workers' output (:mod:`.worker`), and has Ray start one worker per
rank: Ray Train's ``TorchTrainer`` (placement group, process group, failure reports) for the torch engines,
Horovod's ``RayExecutor`` for Horovod. Whatever the workers relay goes to stdout, where the launcher reads its
agents' events as from any transport. SIGTERM/SIGINT/SIGHUP end this driver, and with it, by Ray's rule for a
driver's job, every actor of this job and nothing else on the cluster.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from . import worker
from .job import RayJob

JOIN_S = 5.0  # how long the last lines of the workers may take to arrive after they ended
TOKEN_S = 10.0  # how long a new connection may take to say the job's token
PREFIX = "launchdeck ray: "


class Relay:
    """The driver's end of the workers' output: a TCP listener on this node's address. A connection that opens
    with the job's token is a worker; each of its lines goes to stdout whole (a lock keeps two ranks' lines
    apart). Anything else is dropped, and after ``workers`` workers nobody more is accepted."""

    def __init__(self, host: str, workers: int) -> None:
        self.server = socket.create_server((host, 0))
        self.address = (host, self.server.getsockname()[1])
        self.token = secrets.token_hex(16)
        self.workers = workers
        self.lock = threading.Lock()
        self.pumps: list[threading.Thread] = []  # one per worker that said the token
        self.first: float | None = None  # when the first worker connected: Ray had placed and started it
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        """One connection at a time says the token (within TOKEN_S per read, a token's length at most); once
        every worker has, the listener closes."""
        while len(self.pumps) < self.workers:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            stream = conn.makefile("rb")
            if not self._opens_with_token(conn, stream):
                stream.close()
                conn.close()
                continue
            self.first = self.first or time.monotonic()
            pump = threading.Thread(target=self._pump, args=(conn, stream), daemon=True)
            self.pumps.append(pump)
            pump.start()
        self.server.close()

    def _opens_with_token(self, conn: socket.socket, stream: Any) -> bool:
        conn.settimeout(TOKEN_S)
        try:
            said = stream.readline(len(self.token) + 1).strip()
        except OSError:
            return False
        conn.settimeout(None)
        return hmac.compare_digest(said, self.token.encode())

    def _pump(self, conn: socket.socket, stream: Any) -> None:
        with conn, stream:
            for line in stream:
                self.write(line if line.endswith(b"\n") else line + b"\n")

    def write(self, data: bytes) -> None:
        with self.lock:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

    def drain(self) -> None:
        """Wait (a few seconds at most) for every worker's last lines: a failed rank's end is among them."""
        deadline = time.monotonic() + JOIN_S
        for pump in list(self.pumps):
            pump.join(max(0.0, deadline - time.monotonic()))


def facing(address: str) -> str | None:
    """This machine's address on the route to the head (None for "auto", or for a head on this machine): Ray
    attaches the driver to the node with that address, not to whichever raylet it finds first."""
    if address == "auto":
        return None
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, int(port)))
        mine = probe.getsockname()[0]
    return None if mine.startswith("127.") else mine


def attach(address: str, network_interface: str | None = None) -> str:
    """``ray.init`` on this machine's node; returns that node's address. ``network_interface``: the NIC the job's
    workers talk on (Ray Train's own gloo group too, which is made before any of our code runs there)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    nics = {"GLOO_SOCKET_IFNAME": network_interface, "NCCL_SOCKET_IFNAME": network_interface}
    ray.init(address=address, _node_ip_address=facing(address), logging_level="WARNING", log_to_driver=False,
             runtime_env={"env_vars": nics} if network_interface else None)
    return ray.util.get_node_ip_address()


def group_only() -> Any:
    """Ray Train's process-group setup, gloo, without its CUDA device choice: that would make a CUDA context, and
    hold GPU memory, in every Ray worker, while the ranks (our subprocesses) choose their own device."""
    from ray.train.torch import TorchConfig

    class GroupOnly(TorchConfig):
        """TorchConfig whose train function runs in no device context."""

        @property
        def train_func_context(self) -> Any:
            return contextlib.nullcontext

    return GroupOnly(backend="gloo")


def run_torch(job: RayJob, relay: Relay) -> None:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": job.cpus_per_worker, **({"GPU": job.gpus_per_worker} if job.gpus_per_worker else {})}
    scaling = ScalingConfig(num_workers=job.world_size, use_gpu=bool(job.gpus_per_worker),
                            resources_per_worker=resources)
    run = RunConfig(name=Path(job.run_dir).name, storage_path=str(Path(job.run_dir) / "ray"),
                    failure_config=FailureConfig(max_failures=0))  # launchdeck's --max-restarts restarts, not Ray
    trainer = TorchTrainer(worker.torch_worker, train_loop_config=worker.config(job, relay.address, relay.token),
                           scaling_config=scaling, torch_config=group_only(), run_config=run)
    trainer.fit()


def run_horovod(job: RayJob, relay: Relay) -> None:
    from horovod.ray import RayExecutor

    nics = {job.network_interface} if job.network_interface else None
    settings = RayExecutor.create_settings(timeout_s=30, nics=nics)
    executor = RayExecutor(settings, num_workers=job.world_size, cpus_per_worker=max(1, int(job.cpus_per_worker)),
                           use_gpu=bool(job.gpus_per_worker), gpus_per_worker=int(job.gpus_per_worker) or None)
    executor.start()
    try:
        executor.run(worker.horovod_worker, args=[worker.config(job, relay.address, relay.token)])
    finally:
        executor.shutdown()


RUNNERS = {"torch": run_torch, "horovod": run_horovod}


def cancel_on_signals() -> None:
    """The launcher stops the job with SIGTERM (Ctrl-C and a failure elsewhere alike): say so and exit at once.
    A driver's exit is, by Ray's rule, the end of its job's actors; their agents then stop the ranks. Installed
    after ``ray.init``, which puts its own handler on SIGTERM; ``os._exit``, because an exception raised in a
    handler is swallowed inside Ray's waits."""
    def cancel(signum: int, _frame: FrameType | None) -> None:
        try:  # straight to the fd, past the relay's lock: a pump may hold it, blocked on a full pipe
            os.write(2, f"\n{PREFIX}{signal.Signals(signum).name}: cancelling this job's workers\n".encode())
        finally:
            os._exit(1)  # stopped: the failure, if there is one, is a rank's, and the launcher names it

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, cancel)


def main(argv: list[str] | None = None) -> int:
    job = RayJob.read((argv or sys.argv[1:])[0])
    began = time.monotonic()
    relay = Relay(attach(job.address, job.network_interface), job.world_size)
    cancel_on_signals()
    attached = time.monotonic()
    try:
        RUNNERS[job.runner](job, relay)
    except Exception as error:  # a worker failed: the agents' events name the rank; this is the driver's line
        relay.drain()
        text = str(error).strip()
        print(f"{PREFIX}the job failed: {text.splitlines()[0] if text else type(error).__name__}", file=sys.stderr,
              flush=True)
        return 1
    finally:
        _shutdown()
    relay.drain()
    print(f"{PREFIX}{_phases(began, attached, relay.first, time.monotonic())}", file=sys.stderr, flush=True)
    return 0


def _phases(began: float, attached: float, first: float | None, done: float) -> str:
    """Where the driver's time went: attaching, Ray placing and starting the workers, the ranks' run."""
    placed = f"first worker up {first - attached:.1f} s later, " if first else ""
    return f"attached in {attached - began:.1f} s, {placed}done {done - (first or attached):.1f} s after that"


def _shutdown() -> None:
    import ray

    ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
