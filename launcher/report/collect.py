"""What a report shows, read from the directories launchdeck writes: tune directories (``tune.json``),
``make bench`` and ``make bench-memory`` directories (``report.json``), and run records (``result.json``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LaunchdeckError


@dataclass
class Point:
    """One measured configuration: strategy, micro batch, ranks, and whatever was measured of it."""

    strategy: str
    micro_batch: int | None = None
    ranks: int | None = None
    tokens_per_s: float | None = None
    losses: list[float] = field(default_factory=list)
    memory: dict | None = None  # measured, per rank (result.json "memory")
    estimate: dict | None = None  # `launchdeck estimate`'s per-rank breakdown


def collect(directories: list[str]) -> list[Point]:
    """Every point found under ``directories``; a directory with nothing launchdeck wrote, or a damaged file,
    is an error (one line)."""
    points: list[Point] = []
    for directory in directories:
        root = Path(directory)
        if not root.is_dir():
            raise LaunchdeckError(f"{root}: not a directory")
        if not any((root / name).is_file() for name in ("tune.json", "report.json", "result.json")) and \
                not any(root.glob("*/result.json")):
            raise LaunchdeckError(f"{directory}: no tune.json, report.json or result.json of launchdeck here")
        try:
            points += _read(root)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
            raise LaunchdeckError(f"{directory}: unreadable or damaged ({type(exc).__name__}: {exc})") from None
    return [p for p in points if p.tokens_per_s is None or math.isfinite(p.tokens_per_s)]


def _read(root: Path) -> list[Point]:
    if (root / "tune.json").is_file():
        return _tune(root)
    if (root / "report.json").is_file():
        return _bench(root, json.loads((root / "report.json").read_text()))
    if (root / "result.json").is_file():
        return [_run(root)]
    return [_run(path.parent) for path in sorted(root.glob("*/result.json"))]


def _run(run_dir: Path, micro_batch: int | None = None) -> Point:
    result = json.loads((run_dir / "result.json").read_text())
    return Point(strategy=result.get("strategy", run_dir.name), micro_batch=micro_batch,
                 ranks=result.get("world_size"), tokens_per_s=result.get("tokens_per_s"),
                 losses=result.get("losses", []), memory=result.get("memory"))


def _tune(root: Path) -> list[Point]:
    points = []
    for trial in json.loads((root / "tune.json").read_text())["trials"]:
        if trial["status"] != "ok":
            continue
        run_dir = Path(trial["run_dir"])
        point = _run(run_dir, trial["candidate"]["micro_batch"]) if (run_dir / "result.json").is_file() else \
            Point(trial["candidate"]["strategy"], trial["candidate"]["micro_batch"])
        point.strategy = _without_micro_batch(trial["candidate"]["label"])  # strategy and knobs
        point.tokens_per_s, point.estimate = trial["tokens_per_s"], trial.get("estimate")
        point.memory = trial.get("memory") or point.memory
        points.append(point)
    return points


def _without_micro_batch(label: str) -> str:
    """``zero2 mb=4 reduce_bucket_size=2e+07`` → ``zero2 reduce_bucket_size=2e+07``."""
    return " ".join(word for word in label.split() if not word.startswith("mb="))


def _bench(root: Path, data: dict | list) -> list[Point]:
    if isinstance(data, list):  # make bench-memory: estimate vs measured per strategy and world
        return [Point(f"{row['strategy']} ({row['model']}, {row['world']} ranks)", ranks=row["world"],
                      memory=row["measured"], estimate=row["estimate"]) for row in data]
    points = [Point(row["strategy"], ranks=2, tokens_per_s=row.get("tokens_per_s"))
              for row in data.get("strategies", []) if row.get("ok")]
    points += [Point(row["strategy"], ranks=row["ranks"], tokens_per_s=row["tokens_per_s"])
               for row in data.get("scaling", []) if row.get("ok")]
    return points
