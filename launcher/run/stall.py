"""The stall watch: is a running job still making progress? Judges positions, starts nothing.

Every rank keeps a progress record (:mod:`launcher.node.progress`); agents carry the changes on their
heartbeats, and for a job on this machine the executor reads the records itself. A job is stalled when
no rank has moved for the limit, or when some ranks have not moved for the limit while others did.
The limit is ``--stall-timeout`` when given, else ``MULTIPLE`` times the longest silence seen between
two moves of one rank while it trains, never below ``FLOOR_S``. The watch arms once every rank has
finished its first step: start-up (compiling ops, loading data) and the first step are never judged;
neither is a checkpoint save (while any rank saves, its peers may wait for it in a collective), nor a
job with a rank gone mid-training (a failure the exit path reports). A job where no rank keeps a
record (a script that never calls ``launcher.progress``) falls back to "no output for the limit since
its last line", with an explicit ``--stall-timeout`` only (without steps there is nothing to take a
multiple of), and from its first line on: start-up, even a silent one, is never judged. The payload
makes its record before its first import, before it prints anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..node.progress import JUDGED, Position

FLOOR_S = 60.0
MULTIPLE = 10.0
FRAMES = 3  # innermost frames of each rank in the report
STALLED = "stalled"  # how a failure's reason starts when the job stalled


@dataclass(frozen=True)
class Stall:
    """A stalled job, as judged: what stopped, for how long, the limit, and which ranks are behind."""

    reason: str  # one line: what the rule saw
    seconds: float  # how long nothing (or the ranks behind) moved
    limit: float
    behind: list[int]  # ranks behind the others (empty when every rank is at the same place)
    positions: dict[int, Position]


@dataclass
class StallWatch:
    """Where each rank is, when it last moved (the launcher's clock), and the rule that judges them.

    ``timeout``: None for the adaptive limit, 0 for never."""

    timeout: float | None
    world_size: int
    positions: dict[int, Position] = field(default_factory=dict)
    moved: dict[int, float] = field(default_factory=dict)  # rank -> monotonic time its position changed
    slowest: float = 0.0  # the longest silence between two moves of one rank after its first step
    last_output: float | None = None  # fallback: when the job last printed anything
    ended: set[int] = field(default_factory=set)  # ranks whose process is gone
    since: float | None = None  # the clocks start here: when the watch armed, or the last save ended

    def report(self, rank: int, position: Position, now: float) -> None:
        old = self.positions.get(rank)
        if old == position or not 0 <= rank < self.world_size:
            return
        if old is not None and old.done >= 1 and old.state == JUDGED:
            # the rank's own clock is exact but may jump (NTP); ours is steady but samples once a beat
            self.slowest = max(self.slowest, min(position.t - old.t, now - self.moved[rank]))
        self.positions[rank], self.moved[rank] = position, now
        if self._clocks_start(old):
            self.since = now

    def _clocks_start(self, old: Position | None) -> bool:
        """When every rank has finished its first step, and again when a save ends (the ranks that waited
        for it in a collective were not stalled)."""
        if self.since is None:
            return self.armed
        return old is not None and old.state == "save"

    def output(self, now: float) -> None:
        self.last_output = now

    @property
    def limit(self) -> float | None:
        if self.timeout is not None:
            return self.timeout or None
        return max(FLOOR_S, MULTIPLE * self.slowest)

    @property
    def armed(self) -> bool:
        return len(self.positions) == self.world_size and all(
            p.done >= 1 or p.state == "finished" for p in self.positions.values())

    def summary(self) -> dict[str, object]:
        """For the outcome: whether the rule was armed, the limit it ended with, the longest silence it saw."""
        return {"armed": self.since is not None, "limit_s": self.limit, "longest_silence_s": round(self.slowest, 3),
                "ranks_reporting": len(self.positions)}

    def check(self, now: float) -> Stall | None:
        limit = self.limit
        if limit is None:
            return None
        if not self.positions:
            return self._silent(now, limit)
        if self.since is None or not self._judging():
            return None
        active = [r for r, p in self.positions.items() if p.state == JUDGED]
        moved = {r: max(self.moved[r], self.since) for r in active}
        newest = max(moved.values())
        if now - newest > limit:
            return self._stall(f"no rank made progress for {now - newest:.1f} s", now - newest, limit, active)
        late = [r for r in active if newest - moved[r] > limit]
        if late:
            seconds = now - min(moved[r] for r in late)
            return self._stall(f"{_ranks(late)} made no progress for {seconds:.1f} s while the others did",
                               seconds, limit, active, late)
        return None

    def _judging(self) -> bool:
        """Training goes on: some rank trains, none saves a checkpoint (its peers may wait for it in a
        collective), and none is gone mid-training (a failure the exit path reports)."""
        states = {p.state for p in self.positions.values()}
        gone_training = any(self.positions[r].state == JUDGED for r in self.ended if r in self.positions)
        return JUDGED in states and "save" not in states and not gone_training

    def _silent(self, now: float, limit: float) -> Stall | None:
        """No rank reports progress: the fallback rule, on any output, with an explicit timeout only."""
        if self.timeout is None or self.last_output is None or now - self.last_output <= limit:
            return None
        seconds = now - self.last_output
        return Stall(f"no output from any rank for {seconds:.1f} s (no rank reports progress)", seconds, limit,
                     [], {})

    def _stall(self, what: str, seconds: float, limit: float, active: list[int],
               late: list[int] | None = None) -> Stall:
        behind = late or _behind({r: self.positions[r] for r in active})
        return Stall(f"{what} (stall timeout {limit:g} s)", seconds, limit, behind, dict(self.positions))


def _behind(positions: dict[int, Position]) -> list[int]:
    """Ranks working on an earlier step than the others; none when all are at the same one."""
    lowest = min(p.working for p in positions.values())
    behind = sorted(r for r, p in positions.items() if p.working == lowest)
    return behind if len(behind) < len(positions) else []


def _ranks(ranks: list[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(map(str, ranks))


def describe(stall: Stall) -> str:
    """The failure's reason: the rule, then who is behind and where the others are."""
    if not stall.behind:
        return f"{STALLED}: {stall.reason}"
    steps = {stall.positions[r].working for r in stall.positions if r not in stall.behind}
    where = f"step {min(steps)}" if len(steps) == 1 else f"steps {min(steps)}-{max(steps)}"
    at = stall.positions[stall.behind[0]]
    return (f"{STALLED}: {stall.reason}; {_ranks(stall.behind)} behind (last finished step {at.done}; "
            f"the others are in {where})")


_PY_SPY_FRAME = re.compile(r"^\s{4}(\S.*)$")  # "    func (file.py:12)"
_FAULT_FRAME = re.compile(r'^\s+File "(.*)", line (\d+) in (\S+)')  # faulthandler's '  File "f", line 3 in g'


def innermost(text: str, count: int = FRAMES) -> list[str]:
    """The innermost frames of the main thread in a py-spy or faulthandler dump, as ``func (file:line)``:
    the thread py-spy names MainThread, else the one running ``<module>``, else the first."""
    threads = _threads(text)
    main = next((frames for name, frames in threads if name == "MainThread"), None) or \
        next((frames for _, frames in threads if any(f.startswith("<module>") for f in frames)), None)
    return (main or (threads[0][1] if threads else []))[:count]


def _threads(text: str) -> list[tuple[str, list[str]]]:
    """(thread name, its frames innermost first) per thread of the dump."""
    threads: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(("Thread ", "Current thread ")):
            threads.append((line.rsplit('"', 2)[1] if line.count('"') >= 2 else "", []))
        elif threads and (match := _FAULT_FRAME.match(line)):
            threads[-1][1].append(f"{match[3]} ({_short(match[1])}:{match[2]})")
        elif threads and (match := _PY_SPY_FRAME.match(line)):
            threads[-1][1].append(_shorten(match[1]))
    return threads


def _shorten(frame: str) -> str:
    """``func (/long/path/to/file.py:12)`` -> ``func (to/file.py:12)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({_short(where.rstrip(')'))})" if where else frame


def _short(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[-2:])
