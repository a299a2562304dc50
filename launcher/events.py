"""The agent → launcher protocol: one JSON object per line, after a marker, inside ordinary output.

Agents write events into the same stream as the ranks' output (ssh, pdsh, mpirun, srun and
horovodrun all carry stdout back, each with its own line prefix), so the launcher finds the marker
anywhere in a line. Kinds: ``start`` (agent up, its pid), ``beat`` (alive), ``gone`` (a rank process
ended; ``t`` is the agent's wall clock, so the first failure across hosts can be told apart from
its collateral), ``hung`` (a rank stayed stopped and was killed), ``exit`` (the agent's command ended).
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "@@launchdeck-event:"


def encode(kind: str, **fields: Any) -> str:
    return MARKER + json.dumps({"kind": kind, **fields}, separators=(",", ":")) + "\n"


def decode(line: str) -> dict[str, Any] | None:
    """The event in ``line``, or None for ordinary output (a garbled event is ordinary output too)."""
    at = line.find(MARKER)
    if at < 0:
        return None
    try:
        event = json.loads(line[at + len(MARKER):])
    except ValueError:
        return None
    return event if isinstance(event, dict) and "kind" in event and "id" in event else None
