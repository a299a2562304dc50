"""``launchdeck report``: ``report.md`` and PNG plots from tune directories, benches and run records.

Everything drawn is read from what launchdeck measured and wrote (``tune.json``, ``report.json``,
``result.json``): throughput per strategy and micro batch, memory per rank by kind (estimate vs measured),
loss curves, and tokens/s against the number of ranks.
"""

from __future__ import annotations

from pathlib import Path

from ..files import write_atomic
from . import plots
from .collect import Point, collect

FIGURES = {"throughput.png": plots.throughput, "memory.png": plots.memory, "loss.png": plots.losses,
           "scaling.png": plots.scaling}


def write_report(directories: list[str], out: Path) -> list[Path]:
    """Draw every figure the data supports into ``out`` and write ``report.md``; returns the files written."""
    points = collect(directories)
    out.mkdir(parents=True, exist_ok=True)
    drawn = [out / name for name, draw in FIGURES.items() if draw(points, out / name)]
    write_atomic(out / "report.md", markdown(points, directories, drawn))
    return [*drawn, out / "report.md"]


def markdown(points: list[Point], directories: list[str], figures: list[Path]) -> str:
    lines = ["# launchdeck report", "", "From: " + ", ".join(f"`{d}`" for d in directories), ""]
    lines += [f"![{figure.stem}]({figure.name})" for figure in figures] + [""]
    if not points:
        lines += ["Nothing measured to draw: no trial or run finished (see each trial's run record).", ""]
    rows = [p for p in points if p.tokens_per_s]
    if rows:
        lines += ["| strategy | micro batch | ranks | tokens/s | peak MiB measured | peak MiB estimated |",
                  "|---|---|---|---|---|---|"]
        for p in sorted(rows, key=lambda p: -(p.tokens_per_s or 0)):
            lines.append(f"| {p.strategy} | {p.micro_batch or '-'} | {p.ranks or '-'} | {p.tokens_per_s:,.0f} | "
                         f"{_mib(p.memory)} | {_mib(p.estimate)} |")
    return "\n".join(lines) + "\n"


def _mib(breakdown: dict | None) -> str:
    return f"{breakdown['peak'] / 2**20:,.1f}" if breakdown and breakdown.get("peak") else "-"
