"""The agent → launcher protocol: one JSON object per line, after a marker, inside ordinary output.

Agents write events into the same stream as the ranks' output (ssh, pdsh, mpirun, srun and
horovodrun all carry stdout back, each with its own line prefix), so the launcher finds the marker
anywhere in a line. The marker carries a tag derived from the run directory: a rank that prints
another job's events (a nested launch, a log being replayed) is not mistaken for an agent. Kinds:
``start`` (agent up, its pid), ``beat`` (alive; ``progress``, when present, maps each of its ranks
that moved since the last beat to its :class:`launcher.node.progress.Position` as a list), ``gone`` (a
rank process ended; ``t`` is the agent's wall clock, so the first failure across hosts can be told
apart from its collateral), ``hung`` (a rank stayed stopped and was killed), ``exit`` (the agent's command ended).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

MARKER = "@@launchdeck-event:"
_NUMBER = (int, float)
_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {  # what each kind must carry
    "start": {"pid": int}, "beat": {}, "gone": {"rank": int, "t": _NUMBER},
    "hung": {"pid": int, "seconds": _NUMBER, "t": _NUMBER}, "exit": {"code": int, "t": _NUMBER, "failures": list},
}


def tag_for(run_dir: str) -> str:
    return hashlib.sha256(run_dir.encode()).hexdigest()[:12]


def node_id(index: int | str) -> str:
    return f"node{index}"


def rank_id(rank: int) -> str:
    return f"rank{rank}"


def rank_of(agent: str) -> int | None:
    """The rank a per-rank agent runs (None for a node's agent)."""
    number = agent[4:] if agent.startswith("rank") else ""
    return int(number) if number.isascii() and number.isdigit() else None


def encode(tag: str, kind: str, **fields: Any) -> str:
    return f"{MARKER}{tag}:" + json.dumps({"kind": kind, **fields}, separators=(",", ":")) + "\n"


def decode(line: str, tag: str) -> dict[str, Any] | None:
    """This run's event in ``line``, or None for ordinary output (a garbled event is ordinary output too)."""
    marker = f"{MARKER}{tag}:"
    at = line.find(marker)
    if at < 0:
        return None
    try:
        event = json.loads(line[at + len(marker):])
    except ValueError:
        return None
    return event if _well_formed(event) else None


def _well_formed(event: Any) -> bool:
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or event.get("kind") not in _FIELDS:
        return False
    return all(isinstance(event.get(name), kind) for name, kind in _FIELDS[event["kind"]].items())
