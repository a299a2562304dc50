"""The launch plan: per node the exact argv, working dir, interpreter and env; per local process the typed
command that starts it. Runs nothing.

``--dry-run`` prints it; the executor runs its commands; the run record keeps it as ``plan.json``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Literal

PLACED_BY_CLUSTER = "(placed by the cluster)"  # a node whose host the cluster's scheduler picks at the start (Ray)


@dataclass(frozen=True)
class NodePlan:
    """What one node runs (its torchrun, or the command each of its ranks runs under mpirun/horovodrun).

    ``env`` is set on top of what the node inherits; ``ranks`` are the global ranks it holds, in order."""

    host: str
    argv: list[str]
    cwd: str
    interpreter: str
    env: dict[str, str] = field(default_factory=dict)
    ranks: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Command:
    """One process this machine starts for the job, and everything the executor needs to run and stop it.

    ``env`` is set on top of the launcher's own environment (a remote node's env travels inside ``argv``);
    ``agents`` are the ids of the agents whose events arrive on its output (see :mod:`launcher.node.events`);
    ``stop`` says how it is asked to end: ``stdin`` closes its standard input (the agent at the other end
    of an ssh connection tears its node down), ``signal`` sends SIGTERM to its process group."""

    name: str  # how reports name it: "ssh HOST", "torchrun", or the program that reaches every host
    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    agents: list[str] = field(default_factory=list)
    stop: Literal["stdin", "signal"] = "signal"
    label: str = ""  # console prefix for its lines (empty where the transport prefixes lines itself)


@dataclass(frozen=True)
class LaunchPlan:
    """A whole job, decided: world size, rendezvous, every node's line and every local command.

    Invariants: ``nodes`` cover ranks ``0..world_size-1`` exactly once, in order; ``rendezvous_host`` is the
    node (by its plan name) that serves ``master_addr:master_port``; ``commands`` empty means this transport
    only prints what each node runs. ``remote_shell`` is how a command reaches a host (ssh and its options),
    empty where the plan never reaches another host itself."""

    strategy: str
    engine: str
    transport: str
    world_size: int
    master_addr: str
    master_port: int
    rendezvous_host: str
    run_dir: str
    config_path: str
    nodes: list[NodePlan]
    commands: list[Command] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # written into the run record before the start
    agents: dict[str, str] = field(default_factory=dict)  # agent id -> host, for every agent that reports
    heartbeat_timeout: float = 10.0  # seconds an agent may stay silent before its node counts as lost
    stall_timeout: float | None = None  # seconds without progress before the job is stalled (None: adaptive, 0: never)
    remote_shell: list[str] = field(default_factory=list)
    cluster_check: list[str] = field(default_factory=list)  # run before the start: exit 2 + one line if unfit

    def to_json(self) -> str:
        """Indented JSON with one line per node and per command: diffable, and fast for 10,000 nodes."""
        head = {k: v for k, v in vars(self).items() if k not in ("nodes", "commands", "files", "agents")}
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
        for key, rows in (("nodes", [vars(n) for n in self.nodes]), ("commands", [vars(c) for c in self.commands])):
            body = ",\n".join(f"    {json.dumps(row)}" for row in rows)
            lines.append(f'  "{key}": [\n{body}\n  ],' if rows else f'  "{key}": [],')
        lines.append(f'  "agents": {json.dumps(self.agents)},')
        lines.append(f'  "files": {json.dumps(self.files)}')
        return "{\n" + "\n".join(lines) + "\n}\n"

    def describe(self) -> str:
        """Human-readable; every command is a copy-pasteable, shell-quoted line."""
        meet = f"{self.master_addr}:{self.master_port}" if self.master_port else "chosen by rank 0 at the start"
        lines = [f"strategy {self.strategy} ({self.engine}) via {self.transport}: world size {self.world_size}, "
                 f"rendezvous {meet}",
                 f"run record: {self.run_dir}", f"config: {self.config_path}"]
        for node in self.nodes:
            lines.append(f"[{node.host}] ranks {_span(node.ranks)} in {node.cwd}")
            lines += [f"  env {k}={shlex.quote(v)}" for k, v in sorted(node.env.items())]
            lines.append("  " + shlex.join(node.argv))
        if [command.argv for command in self.commands] != [node.argv for node in self.nodes]:
            lines.append("run here:" if self.commands else "run the line above on each node (nothing runs here)")
            lines += ["  " + shlex.join(command.argv) for command in self.commands]
        return "\n".join(lines) + "\n"


def _span(ranks: list[int]) -> str:
    return f"{ranks[0]}-{ranks[-1]}" if len(ranks) > 1 else str(ranks[0]) if ranks else "-"
