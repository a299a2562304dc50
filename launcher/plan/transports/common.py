"""What every transport shares: the torchrun each node runs, the env it gets, quoting, ports, agents."""

from __future__ import annotations

import functools
import os
import random
import re
import shlex
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from ... import entrypoints
from ...errors import LaunchdeckError
from ...node import events
from ..model import Command, LaunchPlan, NodePlan

# Forwarded from this environment to every node when set (plus --env K=V and launchdeck's own).
FORWARD_NAMES = ("PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_HOME", "OMP_NUM_THREADS")
FORWARD_PREFIXES = ("NCCL_", "GLOO_", "TORCH_", "HF_", "TRANSFORMERS_", "DS_", "HOROVOD_", "LAUNCHDECK_")
OUTPUT_ENV = {"TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE": "[rank${rank}]:", "PYTHONUNBUFFERED": "1"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TORCHRUN = "torch.distributed.run"  # torchrun's module: `python -m torch.distributed.run` is torchrun
REMOTE_PORT_RANGE = (20000, 30000)  # below Linux's ephemeral range (32768+): no client socket holds one


@dataclass(frozen=True)
class ClusterContext:
    """Everything a transport needs to plan one job: hosts and slots, the rank command, rendezvous, ssh.

    Invariant: ``slots`` keeps the hostfile's host order, which is the node order (node rank = index)."""

    totals: dict[str, int]  # host -> slots in the hostfile
    slots: dict[str, list[int]]  # host -> slot indices in use (after --include/--exclude)
    command: list[str]  # what each rank runs: ['-m', 'launcher.payload.train', …] or a script
    env: dict[str, str]  # launchdeck's variables plus forwarded and --env ones
    run_dir: str
    config_path: str
    strategy: str
    engine: str
    master_addr: str
    master_port: int
    rendezvous_host: str
    cpu: bool = False
    ssh_port: int | None = None
    ssh_key: str | None = None
    network_interface: str | None = None
    hang_timeout: float = 5.0  # seconds a rank may stay stopped before its agent kills it (0: never)
    heartbeat_timeout: float = 10.0  # seconds an agent may stay silent before its node counts as lost
    stall_timeout: float | None = None  # seconds without progress before the job is stalled (None: adaptive)
    extra: dict[str, object] = field(default_factory=dict)  # engine-rendered transport arguments
    max_restarts: int = 0  # torchrun restarts the node's worker group this many times (elastic plans only)
    min_nodes: int | None = None  # the fewest nodes an elastic rendezvous goes on with (default: all)
    elastic: bool = False  # each node's torchrun meets the others through c10d and owns the restarts
    interpreter: str = field(default_factory=lambda: sys.executable)  # the Python each node's torchrun runs on
    ray_address: str | None = None  # --ray-address: the Ray cluster's head (None: the one this machine is in)
    ray_runner: Literal["torch", "horovod"] = "torch"  # how Ray starts the engine's ranks (its registry entry)

    @property
    def world_size(self) -> int:
        return sum(len(s) for s in self.slots.values())

    @property
    def names(self) -> list[str]:
        return list(self.slots)


class ShellWord(str):
    """An argument the node's shell expands (``--node-rank=$SLURM_NODEID``): quoted all but the variable."""

    prefix: str
    variable: str

    def __new__(cls, variable: str, prefix: str = "") -> ShellWord:
        word = super().__new__(cls, f"{prefix}${variable}")
        word.prefix, word.variable = prefix, variable
        return word


def parse_env(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--env K=V`` (values verbatim: they are quoted wherever a shell could see them)."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.match(name):
            raise LaunchdeckError(f"--env {pair!r}: expected NAME=VALUE with NAME like [A-Za-z_][A-Za-z0-9_]*")
        env[name] = value
    return env


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in FORWARD_NAMES or k.startswith(FORWARD_PREFIXES)}


def cluster_env(env: dict[str, str], network_interface: str | None) -> dict[str, str]:
    """The job env for every node: rank-prefixed, unbuffered output; the chosen NIC for gloo and NCCL too
    (unless set explicitly)."""
    env = {**OUTPUT_ENV, **env}
    if network_interface:
        env.setdefault("GLOO_SOCKET_IFNAME", network_interface)
        env.setdefault("NCCL_SOCKET_IFNAME", network_interface)
    return env


def is_this_machine(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn())


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out as free, so two jobs on one host never collide on 29500."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def choose_port(master: str, run_dir: str, requested: int | None, attempt: int = 1) -> int:
    """--master-port, else a port the kernel reports free when the master is this machine, else a port
    drawn (seeded by the run and the attempt: a restart never waits for the port its predecessor's agent is
    still releasing) from 20000-29999, below the ephemeral range; `doctor` checks it remotely."""
    if requested:
        return requested
    if is_this_machine(master):
        return free_port()
    return random.Random(run_dir if attempt == 1 else f"{run_dir}#{attempt}").randrange(*REMOTE_PORT_RANGE)


def python() -> str:
    return sys.executable


def torchrun_argv(ctx: ClusterContext, node_rank: int | str | None, nproc: int) -> list[str]:
    """``python -m torch.distributed.run …`` for one node: static rendezvous and no restarts (launchdeck's own
    restarts start the job again), or c10d with torchrun's restarts in an elastic plan; flat per-rank logs.

    ``node_rank`` may be a word the node's shell or pdsh fills in; None leaves the rendezvous (node count and
    rank, master, restarts) to the environment: torchrun reads ``PET_*`` for every flag not given, as a
    Kubernetes operator sets them."""
    return [ctx.interpreter, "-m", TORCHRUN, *_rendezvous_flags(ctx, node_rank), f"--nproc-per-node={nproc}",
            "--monitor-interval=0.1", "--shutdown-timeout=5",
            f"--log-dir={os.path.join(ctx.run_dir, 'logs')}", "--logs-specs=launchdeck", "--redirects=3",
            "--tee=3", "--local-ranks-filter=0", *ctx.command]


def _rendezvous_flags(ctx: ClusterContext, node_rank: int | str | None) -> list[str]:
    if node_rank is None:
        return []
    if ctx.elastic:
        return elastic_flags(ctx)
    return [f"--nnodes={len(ctx.slots)}", flag("--node-rank=", node_rank), f"--master-addr={ctx.master_addr}",
            f"--master-port={ctx.master_port}", "--max-restarts=0"]


def elastic_flags(ctx: ClusterContext) -> list[str]:
    """c10d rendezvous: nodes join in any order, a restarted node (a pod rescheduled) rejoins, and the job goes
    on with as few as ``min_nodes``; torchrun restarts the worker group up to ``max_restarts`` times."""
    nodes = len(ctx.slots)
    low = ctx.min_nodes or nodes
    return [f"--nnodes={low}:{nodes}" if low != nodes else f"--nnodes={nodes}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={ctx.master_addr}:{ctx.master_port}", f"--rdzv-id={os.path.basename(ctx.run_dir)}",
            f"--max-restarts={ctx.max_restarts}"]


def flag(name: str, value: int | str) -> str:
    """``--name=value``, still expanded by the node's shell when ``value`` is a :class:`ShellWord`."""
    return ShellWord(value.variable, name + value.prefix) if isinstance(value, ShellWord) else f"{name}{value}"


def node_env(ctx: ClusterContext, host: str) -> dict[str, str]:
    """The env one node's ranks get: the job's, plus the GPUs its slots name when filtered."""
    env = dict(ctx.env)
    slots = ctx.slots[host]
    if not ctx.cpu and slots != list(range(ctx.totals[host])):
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, slots))
    return env


def remote_command(cwd: str, env: dict[str, str], argv: list[str]) -> str:
    """One shell line for a remote login shell: every piece quoted, the interpreter by absolute path."""
    command = " ".join(map(_quote, argv))
    return f"cd {shlex.quote(cwd)} && exec env {_assignments(tuple(sorted(env.items())))} {command}"


def _quote(arg: str) -> str:
    if isinstance(arg, ShellWord):
        return f'{shlex.quote(arg.prefix)}"${arg.variable}"'
    return _quote_cached(arg)


_quote_cached = functools.lru_cache(maxsize=8192)(shlex.quote)  # 10,000 nodes repeat the same few dozen args


@functools.lru_cache(maxsize=64)
def _assignments(items: tuple[tuple[str, str], ...]) -> str:
    """``'NAME=VALUE' …``, each quoted; cached because most nodes share one environment."""
    return " ".join(shlex.quote(f"{k}={v}") for k, v in items)


def rank_spans(ctx: ClusterContext) -> Iterator[tuple[int, str, list[int]]]:
    """(node index, host, its global ranks) in host order."""
    first = 0
    for index, (host, slots) in enumerate(ctx.slots.items()):
        yield index, host, list(range(first, first + len(slots)))
        first += len(slots)


def agent_argv(ctx: ClusterContext, *mode: str) -> list[str]:
    """``python -m launcher.node.agent MODE… --`` (mode: ``--node N [--host H]`` or ``--per-rank``)."""
    logs = ["--rank-logs", os.path.join(ctx.run_dir, "logs")] if "--per-rank" in mode else []
    return [python(), "-m", entrypoints.AGENT, *mode, *logs, f"--hang-timeout={ctx.hang_timeout:g}",
            f"--heartbeat-timeout={ctx.heartbeat_timeout:g}", "--"]


Agent = Callable[[int | str, str], list[str]]  # (node index, host) -> the agent arguments a node's torchrun runs under


def node_argv(ctx: ClusterContext, agent: Agent | None, index: int | str, host: str, nproc: int) -> list[str]:
    """One node's line: its agent (none: bare torchrun) around its torchrun. ``index`` and ``host`` may be
    words a shell or pdsh fills in on the node (``$SLURM_NODEID``, ``%n``, ``%h``)."""
    return [*(agent(index, host) if agent else []), *torchrun_argv(ctx, index, nproc)]


def torchrun_nodes(ctx: ClusterContext, agent: Agent | None = None) -> list[NodePlan]:
    """One torchrun per node (ssh, pdsh, slurm, per-node torchrun), node rank = its index."""
    cwd = os.getcwd()
    return [NodePlan(host, node_argv(ctx, agent, index, host, len(ranks)), cwd, python(), node_env(ctx, host), ranks)
            for index, host, ranks in rank_spans(ctx)]


def rank_nodes(ctx: ClusterContext, extra_env: dict[str, str] | None = None) -> list[NodePlan]:
    """Launchers that start every rank themselves (mpirun, horovodrun): each rank runs the command under an
    agent of its own."""
    argv, cwd = rank_argv(ctx), os.getcwd()
    return [NodePlan(host, argv, cwd, python(), {**node_env(ctx, host), **(extra_env or {})}, ranks)
            for _, host, ranks in rank_spans(ctx)]


def rendezvous_env(ctx: ClusterContext) -> dict[str, str]:
    """What torch.distributed needs where no torchrun states it (ranks started by mpirun or horovodrun)."""
    return {"MASTER_ADDR": ctx.master_addr, "MASTER_PORT": str(ctx.master_port)}


def rank_argv(ctx: ClusterContext) -> list[str]:
    return [*agent_argv(ctx, "--per-rank"), python(), "-u", *ctx.command]


def node_agents(nodes: list[NodePlan]) -> dict[str, str]:
    """Agent id -> host where one agent watches each node."""
    return {events.node_id(index): node.host for index, node in enumerate(nodes)}


def rank_agents(nodes: list[NodePlan]) -> dict[str, str]:
    """Agent id -> host where one agent watches each rank."""
    return {events.rank_id(rank): node.host for node in nodes for rank in node.ranks}


def one_command(name: str, argv: list[str], agents: dict[str, str]) -> Command:
    """The single local process of a transport that reaches every host itself (pdsh, mpirun, srun, …)."""
    return Command(name, argv, os.getcwd(), agents=list(agents))


def make_plan(ctx: ClusterContext, transport: str, nodes: list[NodePlan], commands: list[Command],
              agents: dict[str, str], files: dict[str, str] | None = None,
              remote_shell: list[str] | None = None, cluster_check: list[str] | None = None) -> LaunchPlan:
    return LaunchPlan(strategy=ctx.strategy, engine=ctx.engine, transport=transport, world_size=ctx.world_size,
                      master_addr=ctx.master_addr, master_port=ctx.master_port,
                      rendezvous_host=ctx.rendezvous_host, run_dir=ctx.run_dir, config_path=ctx.config_path,
                      nodes=nodes, commands=commands, files=files or {}, agents=agents,
                      heartbeat_timeout=ctx.heartbeat_timeout, stall_timeout=ctx.stall_timeout,
                      remote_shell=remote_shell or [], cluster_check=cluster_check or [])
