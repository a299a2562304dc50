"""A real Ray cluster on fake hosts: the head in one network-namespace host, a worker node in another, and
this machine (where the launcher runs) joined as a node with no CPUs, as a login node is on a real cluster.

Why the third node: a Ray driver must run on a node of its cluster (``ray.init`` attaches to the raylet on
its own machine), and ``--num-cpus 0`` keeps every rank off it, so ranks really run on the two fake hosts.
Each node is one ``ray start --block`` process: ending it (SIGTERM) stops every Ray process it started,
and the fake hosts' namespaces are emptied by :class:`~tests.netns_cluster.FakeCluster` besides, so a test
never leaves a raylet behind, also when it fails. ``ray stop`` is never used: it kills every Ray process
on the machine, other tests' clusters included.

Measured here (Ray 2.60, 2 cores): the three nodes are up in ~10 s; see :meth:`RayCluster.memory`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .netns_cluster import FakeCluster, FakeHost

GCS_PORT = 6379
UP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}


def _ray() -> str:
    return str(Path(sys.executable).with_name("ray"))


class RayCluster:
    """``ray start`` on host 1 (head, ``cpus`` CPUs), host 2 (worker, ``cpus`` CPUs) and here (no CPUs).

    ``address`` is the head's GCS address (``--ray-address``); ``env()`` is the launcher's environment."""

    def __init__(self, fake: FakeCluster, cpus: int = 2) -> None:
        self.fake = fake
        self.cpus = cpus
        self.head: FakeHost = fake.hosts[0]
        self.address = f"{self.head.ip}:{GCS_PORT}"
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.dir = Path(tempfile.mkdtemp(prefix=f"{fake.prefix}-ray-"))

    def __enter__(self) -> RayCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return {**self.fake.env(base), **RAY_ENV}

    def start(self) -> None:
        """The head first, then the worker host and this machine; waits until the head counts 3 nodes."""
        self._spawn(self.head.name, self.head.netns, self.head.ip, ["--head", f"--port={GCS_PORT}",
                                                                  f"--num-cpus={self.cpus}",
                                                             "--include-dashboard=false"])
        for host in self.fake.hosts[1:]:
            self._spawn(host.name, host.netns, host.ip, [f"--address={self.address}", f"--num-cpus={self.cpus}"])
        self._spawn("here", None, self.fake.gateway, [f"--address={self.address}", "--num-cpus=0"])
        self._wait_nodes(len(self.fake.hosts) + 1)

    def _spawn(self, name: str, netns: str | None, ip: str, args: list[str]) -> None:
        temp = self.dir / name  # Unix socket paths must stay short: one short dir per node
        argv = [_ray(), "start", "--block", f"--node-ip-address={ip}", f"--temp-dir={temp}",
                "--disable-usage-stats", "--log-style=record", *args]
        if netns:  # a UTS namespace too, named after the host: ranks see their own host's name
            argv = ["ip", "netns", "exec", netns, "unshare", "--uts", "sh", "-c",
                    f'hostname {shlex.quote(name)} && exec "$@"', "sh", *argv]
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - the node's lifetime, closed with it
        self.nodes[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            env=self.env(), start_new_session=True)
        log.close()

    def _wait_nodes(self, count: int) -> None:
        deadline = time.monotonic() + UP_TIMEOUT_S
        while time.monotonic() < deadline:
            for name, proc in self.nodes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"ray node {name} exited rc {proc.returncode}: {self.log(name)[-2000:]}")
            if self.alive_nodes() >= count:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the Ray cluster has {self.alive_nodes()} of {count} nodes after {UP_TIMEOUT_S:g} s")

    def alive_nodes(self) -> int:
        """Live nodes as the head's GCS counts them (asked with the Ray CLI, from this machine)."""
        code = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                "print(sum(n['Alive'] for n in ray.nodes()))")
        proc = subprocess.run([sys.executable, "-c", code, self.address], capture_output=True, text=True,
                              env=self.env(), timeout=60)
        return int(proc.stdout.split()[-1]) if proc.returncode == 0 and proc.stdout.split() else 0

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def ray_pids(self) -> list[int]:
        """Processes of this cluster still alive here and on the fake hosts (their command lines name our dir)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and str(self.dir).encode() in _cmdline(entry):
                found.append(int(entry.name))
        return found

    def close(self) -> None:
        """SIGTERM each ``ray start --block`` (it stops what it started), SIGKILL what is left."""
        for proc in self.nodes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.nodes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in self.ray_pids():
            _kill(pid)
        shutil.rmtree(self.dir, ignore_errors=True)


def _cmdline(entry: Path) -> bytes:
    try:
        return (entry / "cmdline").read_bytes()
    except OSError:
        return b""


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
