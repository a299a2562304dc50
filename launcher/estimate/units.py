"""Byte sizes as people write them (``80GiB``, ``40 GB``, ``1.5TiB``) and as tables show them."""

from __future__ import annotations

import math
import re

from ..errors import StrategyError

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(text: str, what: str = "--gpu-memory") -> int:
    """Bytes in ``text``: a number with an optional unit (B, KB…TB decimal, KiB…TiB binary); > 0."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in UNITS:
        raise StrategyError(f"{what} {text!r}: not a size (examples: 80GiB, 40GB, 24576MiB)")
    value = float(match.group(1)) * UNITS[unit]
    if not math.isfinite(value) or value >= 2**80:
        raise StrategyError(f"{what} {text!r}: too large to be a device's memory")
    size = int(value)
    if size <= 0:
        raise StrategyError(f"{what} {text!r}: must be more than zero bytes")
    return size


def human(size: int | float) -> str:
    """``size`` bytes in binary units, three significant figures (``1.23 GiB``)."""
    value, unit = float(size), "B"
    for name in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 999.5:  # what rounds to 1000 or more is shown in the next unit
            break
        value, unit = value / 1024, name
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
