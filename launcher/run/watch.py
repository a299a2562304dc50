"""What the launcher knows about a running job: which agents answer, and every failure it has seen.

Fed by agent events (launcher.node.events) and by the exits of the launcher's own commands; decides
nothing about processes. The first failure is the one that happened first on the hosts' clocks (an
agent stamps when a rank ended), not the first one reported: when a rank dies, its peers on other
hosts fail a moment later with "connection reset", and their reports can arrive sooner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..node import events, torchrun_failures
from ..node.progress import Position
from ..plan.model import PLACED_BY_CLUSTER, LaunchPlan
from .stall import STALLED, Stall, StallWatch, describe

START_TIMEOUT_S = 120.0  # an agent that never reports within this long never started
TAIL_LINES = 12


TIMED_OUT = "timed out"  # how a Failure's reason starts when the job outlived its time limit


@dataclass(frozen=True)
class Failure:
    """The first failure of a job, as reported: where, which rank, how, and the last lines of its logs."""

    host: str
    rank: int | None  # None: a whole node or command failed, no rank known
    exit_code: int | None  # None: it did not exit (it hung, or stopped answering)
    log_tails: dict[str, list[str]]  # log path (or command) -> its last lines (stderr first, then stdout)
    reason: str = ""  # what happened, when an exit code alone does not say it
    stacks: list[str] = field(default_factory=list)  # a stall: where each rank was, one line per rank


@dataclass(frozen=True)
class Candidate:
    """One failure seen while the job ran; the earliest on the hosts' clocks becomes the :class:`Failure`."""

    t: float  # wall-clock seconds when it happened
    host: str
    rank: int | None
    exit_code: int | None
    reason: str = ""
    output: tuple[str, ...] = ()  # the command's last lines, when there is no rank log to show
    stacks: tuple[str, ...] = ()


@dataclass
class Watch:
    """The launcher's view of a running job: which agents answer, and every failure seen so far.

    Fed by agent events and the exits of the launcher's own commands; decides nothing about processes.
    Once ``frozen`` (the user interrupted), nothing that dies afterwards counts as a failure."""

    plan: LaunchPlan
    tag: str = field(init=False)  # this run's event tag (launcher.node.events)
    hosts: dict[str, str] = field(init=False)  # agent id -> host
    rank_hosts: dict[int, str] = field(init=False)
    seen: dict[str, float] = field(default_factory=dict)  # agent id -> monotonic time last heard
    pids: dict[str, int] = field(default_factory=dict)  # agent id -> its pid on its host
    exited: set[str] = field(default_factory=set)  # agents that reported their command's exit
    lost: set[str] = field(default_factory=set)  # agents that stopped answering (or never started)
    ended: set[str] = field(default_factory=set)
    gone: dict[int, float] = field(default_factory=dict)  # rank -> wall time its process ended
    candidates: list[Candidate] = field(default_factory=list)
    begun: float = field(default_factory=time.monotonic)
    frozen: bool = False  # set once the user interrupted: what dies after that is no failure
    stall: StallWatch = field(init=False)  # where each rank is, and whether the job still moves

    def __post_init__(self) -> None:
        self.tag = events.tag_for(self.plan.run_dir)
        self.stall = StallWatch(self.plan.stall_timeout, self.plan.world_size)
        self.hosts = dict(self.plan.agents)
        self.rank_hosts = {rank: node.host for node in self.plan.nodes for rank in node.ranks}

    @property
    def failed(self) -> bool:
        return bool(self.candidates)

    def on_event(self, event: dict, now: float) -> None:
        agent, kind = event["id"], event["kind"]
        if agent not in self.hosts:
            return  # not one of ours (a garbled or foreign line)
        self.seen[agent] = now
        rank = event.get("rank")
        if kind == "start":
            self.pids[agent] = event["pid"]
            self._placed(agent, event.get("host"))
        elif kind == "beat":
            self._progress(event.get("progress"), now)
        elif kind == "gone":
            self.gone.setdefault(rank, event["t"])
            self.stall.ended.add(rank)
        elif kind == "hung":
            self._add(event["t"], self._host(agent, rank), rank, None,
                      f"hung: stopped for {event['seconds']} s, killed by launchdeck's agent")
        elif kind == "exit":
            self.ended.add(agent)
            self.exited.add(agent)
            if rank is not None:  # a per-rank agent: its rank's process is gone (a node's ranks sent "gone")
                self.stall.ended.add(rank)
            if event["code"]:
                self._agent_failed(agent, event)

    def _progress(self, moved: object, now: float) -> None:
        """A heartbeat's ``progress``: rank (a string, as JSON keys are) -> its position as a list."""
        if not isinstance(moved, dict):
            return
        for rank, items in moved.items():
            position = Position.from_list(items)
            if rank.isascii() and rank.isdigit() and position is not None:
                self.stall.report(int(rank), position, now)

    def _agent_failed(self, agent: str, event: dict) -> None:
        rank, code, t = event.get("rank"), event["code"], event["t"]
        if rank is not None:  # a per-rank agent: its command was the rank
            self._add(self.gone.get(rank, t), self._host(agent, rank), rank, code)
        for failed, failed_code in event.get("failures", []):  # a node's torchrun: its failure table
            self._add(self.gone.get(failed, t), self._host(agent, failed), failed, failed_code)
        if rank is None and not event.get("failures"):
            self._add(t, self.hosts[agent], None, code, f"its torchrun exited with code {code}")

    def on_exit(self, agents: list[str], name: str, code: int, output: list[str]) -> None:
        """One of the launcher's commands ended; ``agents`` are the agents it carried."""
        silent = [a for a in agents if a not in self.ended]
        self.ended.update(agents)
        if not code:
            return
        if not agents:  # a local torchrun: its own failure table names the rank
            found = torchrun_failures.failures("".join(output))
            if found:
                self._add(time.time(), found[0].host, found[0].rank, found[0].exit_code)
        elif silent or not self.candidates:
            host = self.hosts[agents[0]] if len(agents) == 1 else name  # a command for all hosts blames none
            self._add(time.time(), host, None, code, f"{name} exited with code {code}"
                      + (" before its agent reported" if silent else ""), tuple(output[-TAIL_LINES:]))

    def check(self, now: float) -> None:
        """Agents that never started, or stopped answering, are failures too."""
        for agent, host in self.hosts.items():
            last = self.seen.get(agent)
            if agent in self.ended:
                continue
            if last is None and now - self.begun > START_TIMEOUT_S:
                reason = f"its agent did not report within {START_TIMEOUT_S:.0f} s of the start"
                unplaced = host == PLACED_BY_CLUSTER
                reason += " (the cluster never placed its worker: busy? see `ray status`)" if unplaced else ""
            elif last is not None and now - last > self.plan.heartbeat_timeout:
                reason = f"stopped answering: no heartbeat for {now - last:.1f} s"
            else:
                continue
            self.ended.add(agent)
            self.lost.add(agent)
            self._add(time.time(), host, events.rank_of(agent), None, reason)

    def timed_out(self, limit: float) -> None:
        """The job outlived the caller's time limit (a tuning trial's): a failure of the whole job."""
        self._add(time.time(), self.plan.rendezvous_host, None, None, f"{TIMED_OUT}: still running after {limit:g} s")

    def stalled_now(self, stall: Stall, stacks: list[str], t: float) -> None:
        """The job stopped making progress (seen at wall time ``t``): a failure of the first rank behind, or
        of the job when none is behind."""
        rank = stall.behind[0] if stall.behind else None
        host = self.rank_hosts.get(rank, self.plan.rendezvous_host)
        self._add(t, host, rank, None, describe(stall), stacks=tuple(stacks))

    def unfinished(self, among: set[str] | None = None) -> dict[str, list[int]]:
        """host -> pids of agents (of ``among``, default all) that started but never reported an exit."""
        found: dict[str, list[int]] = {}
        for agent, pid in self.pids.items():
            if agent not in self.exited and (among is None or agent in among):
                found.setdefault(self.hosts[agent], []).append(pid)
        return found

    def first(self, logs: Path) -> Failure | None:
        if not self.candidates:
            return None
        # a time limit or a stall is the cause of everything after it, whatever the hosts' clocks say
        causes = [c for c in self.candidates if c.reason.startswith((TIMED_OUT, STALLED))]
        c = causes[0] if causes else min(self.candidates, key=lambda candidate: candidate.t)
        tails = rank_log_tails(logs, c.rank) if c.rank is not None else {}
        if c.output and not tails:
            tails = {"output": [line.rstrip("\n") for line in c.output if line.strip()]}
        return Failure(c.host, c.rank, c.exit_code, tails, c.reason, list(c.stacks))

    def _add(self, t: float, host: str, rank: int | None, code: int | None, reason: str = "",
             output: tuple[str, ...] = (), stacks: tuple[str, ...] = ()) -> None:
        if not self.frozen:
            self.candidates.append(Candidate(t, host, rank, code, reason, output, stacks))

    def _placed(self, agent: str, host: object) -> None:
        """Where the cluster placed an agent the plan could not name a host for (Ray): as its start says."""
        if self.hosts[agent] == PLACED_BY_CLUSTER and isinstance(host, str) and host:
            self.hosts[agent] = host
            if (rank := events.rank_of(agent)) is not None:
                self.rank_hosts[rank] = host

    def _host(self, agent: str, rank: int | None) -> str:
        return self.rank_hosts.get(rank, self.hosts[agent]) if rank is not None else self.hosts[agent]


def rank_log_tails(logs: Path, rank: int, lines: int = TAIL_LINES) -> dict[str, list[str]]:
    """The last lines of a rank's logs (stderr first): torchrun's log plugin and the agent both write these."""
    tails = {}
    for path in (logs / f"rank{rank}.err.log", logs / f"rank{rank}.log"):
        text = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()] if path.is_file() else []
        if text:
            tails[str(path)] = text[-lines:]
    return tails
