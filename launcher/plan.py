"""The launch plan: per node, the exact argv, working dir, interpreter and env. Runs nothing.

``--dry-run`` prints it; the executor runs it; the run record keeps it as ``plan.json``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from . import events


@dataclass(frozen=True)
class NodePlan:
    host: str
    argv: list[str]
    cwd: str
    interpreter: str
    env: dict[str, str] = field(default_factory=dict)  # set on top of the inherited environment
    ranks: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class LaunchPlan:
    strategy: str
    engine: str
    transport: str
    world_size: int
    master_addr: str
    master_port: int
    run_dir: str
    config_path: str
    nodes: list[NodePlan]
    commands: list[list[str]] = field(default_factory=list)  # what this machine runs (none: run per node)
    files: dict[str, str] = field(default_factory=dict)  # written into the run record before the start
    agents: str = "none"  # who reports heartbeats (launcher.agent): "nodes", "ranks" or "none"
    heartbeat_timeout_s: float = 10.0  # an agent silent this long has stopped answering
    stdin_stop: bool = False  # closing a command's stdin stops it (the ssh transport's control channel)
    remote_shell: list[str] = field(default_factory=list)  # how to run a command on a host: ssh and its options

    def agent_hosts(self) -> dict[str, str]:
        """Agent id -> host, for every agent this plan starts (see launcher.agent)."""
        if self.agents == "nodes":
            return {events.node_id(index): node.host for index, node in enumerate(self.nodes)}
        if self.agents == "ranks":
            return {events.rank_id(rank): node.host for node in self.nodes for rank in node.ranks}
        return {}

    def to_json(self) -> str:
        """Indented JSON with one line per node and per command: diffable, and fast for 10,000 nodes."""
        head = {k: v for k, v in vars(self).items() if k not in ("nodes", "commands", "files")}
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
        for key, rows in (("nodes", [vars(n) for n in self.nodes]), ("commands", self.commands)):
            body = ",\n".join(f"    {json.dumps(row)}" for row in rows)
            lines.append(f'  "{key}": [\n{body}\n  ],' if rows else f'  "{key}": [],')
        lines.append(f'  "files": {json.dumps(self.files)}')
        return "{\n" + "\n".join(lines) + "\n}\n"

    def describe(self) -> str:
        """Human-readable; every command is a copy-pasteable, shell-quoted line."""
        lines = [f"strategy {self.strategy} ({self.engine}) via {self.transport}: world size {self.world_size}, "
                 f"rendezvous {self.master_addr}:{self.master_port}",
                 f"run record: {self.run_dir}", f"config: {self.config_path}"]
        for node in self.nodes:
            lines.append(f"[{node.host}] ranks {_span(node.ranks)} in {node.cwd}")
            lines += [f"  env {k}={shlex.quote(v)}" for k, v in sorted(node.env.items())]
            lines.append("  " + shlex.join(node.argv))
        if self.transport != "local":
            lines.append("run here:" if self.commands else "run the line above on each node (nothing runs here)")
            lines += ["  " + shlex.join(command) for command in self.commands]
        return "\n".join(lines) + "\n"


def _span(ranks: list[int]) -> str:
    return f"{ranks[0]}-{ranks[-1]}" if len(ranks) > 1 else str(ranks[0]) if ranks else "-"
