"""Every rank's stack at the moment a job stalls: dumped on each host (:mod:`launcher.node.stacks`, run
through the plan's remote shell like the reap), kept in the run record as ``logs/stall/rank<R>.txt``,
and summed up in one line per rank for the report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .. import entrypoints
from ..node.progress import Position
from ..node.stacks import RankStack
from ..plan.model import LaunchPlan
from . import remote
from .stall import Stall, innermost

DUMP_TIMEOUT_S = 15.0  # per host: ssh, the interpreter's start, py-spy on every rank (5 s each at most)


@dataclass(frozen=True)
class Dumps:
    """What the hosts answered: rank -> (its host, its stacks), and a note per host that gave none."""

    ranks: dict[int, tuple[str, RankStack]]
    notes: dict[str, str]  # host -> why it gave no stacks


def gather(plan: LaunchPlan, roots: dict[str, list[int]]) -> Dumps:
    """Dump the ranks below ``roots`` (host -> the job's agents, or its local torchrun) on every host at once."""
    hosts = remote.reachable(plan, list(roots))
    args = {host: ["--run-dir", plan.run_dir, *map(str, roots[host])] for host in hosts}
    answers = remote.on_each(hosts, lambda host: remote.run_module(plan, host, entrypoints.STACKS, args[host],
                                                                  DUMP_TIMEOUT_S))
    notes = {host: f"{plan.transport} gives launchdeck no way to run a command there" for host in roots
             if host not in hosts}
    ranks: dict[int, tuple[str, RankStack]] = {}
    for host, answer in answers.items():
        if answer is None:
            notes[host] = f"no answer within {DUMP_TIMEOUT_S:g} s"
        for line in (answer or "").splitlines():
            stack = _decode(line)
            if stack is not None:
                ranks[stack.rank] = (host, stack)
    return Dumps(ranks, notes)


def _decode(line: str) -> RankStack | None:
    try:
        return RankStack(**json.loads(line))
    except (ValueError, TypeError):
        return None  # a login banner or a warning of the remote shell


def write(logs: Path, dumps: Dumps) -> Path:
    """``logs/stall/rank<R>.txt`` per rank dumped: where, which tool, then its stacks as dumped."""
    folder = logs / "stall"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    for rank, (host, stack) in dumps.ranks.items():
        head = f"rank {rank} on {host}, pid {stack.pid}, dumped by {stack.tool or 'nothing'} at {stamp} UTC\n"
        note = f"{stack.note}\n" if stack.note else ""
        (folder / f"rank{rank}.txt").write_text(head + note + "\n" + stack.text)
    return folder


def summaries(stall: Stall, dumps: Dumps, world_size: int, rank_hosts: dict[int, str]) -> list[str]:
    """One line per rank: where it is (its progress, then its innermost frames), behind ones marked."""
    return [_summary(rank, stall, dumps, rank_hosts.get(rank, "?")) for rank in range(world_size)]


def _summary(rank: int, stall: Stall, dumps: Dumps, planned_host: str) -> str:
    host, stack = dumps.ranks.get(rank, (planned_host, None))
    mark = " BEHIND" if rank in stall.behind else ""
    head = f"rank {rank} on {host} ({_where(stall.positions.get(rank))}){mark}"
    if stack is None:
        return f"{head}: no stack ({dumps.notes.get(host, 'its process was not found')})"
    frames = innermost(stack.text)
    if not frames:
        return f"{head}: no stack ({stack.note or 'the dump was empty'})"
    return f"{head} [{stack.tool}]: " + " < ".join(frames)


def _where(position: Position | None) -> str:
    if position is None:
        return "no progress reported"
    if position.working > position.done:
        return f"in step {position.working}"
    return f"after step {position.done}"
