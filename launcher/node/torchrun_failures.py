"""Reading torch elastic's failure table (``ChildFailedError``), which torchrun prints when a rank fails.

Stdlib only: the launcher reads it from a local torchrun's output, the agent from its node's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENTRY = re.compile(r"host\s*:\s*(\S+)\s*\n.*?rank\s*:\s*(\d+).*?\n.*?exitcode\s*:\s*(-?\d+)")
_ROOT = "Root Cause (first observed failure):"


@dataclass(frozen=True)
class RankFailure:
    """One row of torchrun's failure table: the rank, its host and its exit code (negative: signal)."""

    host: str
    rank: int
    exit_code: int


def failures(output: str) -> list[RankFailure]:
    """Every failed rank in the last table of ``output``, the root cause first; [] without a table."""
    at = output.rfind(_ROOT)
    if at < 0:
        return []
    table_start = output.rfind("Failures:", 0, at)
    root = _entries(output[at:])[:1]
    others = _entries(output[table_start:at]) if table_start >= 0 else []
    return root + [f for f in others if f not in root]


def _entries(text: str) -> list[RankFailure]:
    return [RankFailure(m.group(1), int(m.group(2)), int(m.group(3))) for m in _ENTRY.finditer(text)]
