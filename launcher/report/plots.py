"""The report's figures, drawn by matplotlib (Agg: no display needed) from measured points only."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from .collect import Point

PARTS = ("params", "grads", "optimizer", "activations", "buffers")
COLORS = {"params": "#4c72b0", "grads": "#dd8452", "optimizer": "#55a868", "activations": "#c44e52",
          "buffers": "#8172b3"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def throughput(points: list[Point], path: Path) -> bool:
    """Grouped bars: tokens/s per strategy, one bar per micro batch."""
    speeds: dict[tuple[str, str], list[float]] = defaultdict(list)
    for p in points:
        if p.tokens_per_s:
            speeds[(p.strategy, "-" if p.micro_batch is None else str(p.micro_batch))].append(p.tokens_per_s)
    if not speeds:
        return False
    strategies = list(dict.fromkeys(s for s, _ in speeds))
    batches = sorted({b for _, b in speeds}, key=lambda b: (b == "-", int(b) if b.isdecimal() else 0))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(strategies) * max(1, len(batches)) / 2), 4))
    width = 0.8 / len(batches)
    for i, batch in enumerate(batches):
        xs = [x + i * width for x, s in enumerate(strategies) if (s, batch) in speeds]
        ys = [statistics.median(speeds[(s, batch)]) for s in strategies if (s, batch) in speeds]
        ax.bar(xs, ys, width, label=f"micro batch {batch}")
    ax.set_xticks([x + width * (len(batches) - 1) / 2 for x in range(len(strategies))], strategies, rotation=20)
    ax.set_ylabel("tokens/s")
    ax.set_title("tokens/s by strategy and micro batch (median)")
    ax.legend(fontsize="small")
    return _save(plt, fig, path)


def memory(points: list[Point], path: Path) -> bool:
    """Per strategy, two stacked bars: the estimate and the measurement, by kind of memory (MiB per rank)."""
    pairs = [p for p in points if p.memory and p.estimate]
    if not pairs:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(18, max(6, 0.55 * len(pairs) + 2)), 5))
    for x, p in enumerate(pairs):
        for offset, parts, hatch in ((-0.2, _parts(p.estimate, True), "//"), (0.2, _parts(p.memory, False), "")):
            bottom = 0.0
            for part in PARTS:
                value = parts[part] / 2**20
                ax.bar(x + offset, value, 0.38, bottom=bottom, color=COLORS[part], hatch=hatch,
                       label=part if x == 0 and offset > 0 else None, edgecolor="white")
                bottom += value
    ax.set_xticks(range(len(pairs)), [_short(p) for p in pairs], rotation=25, ha="right", fontsize="small")
    ax.set_ylabel("MiB per rank")
    ax.set_title("Memory per rank: estimate (hatched, left) vs measured (right)")
    ax.legend(fontsize="small")
    return _save(plt, fig, path)


def _parts(breakdown: dict, estimate: bool) -> dict[str, float]:
    """The stacked parts; the estimate's temporaries join its buffers (the measurement cannot tell them apart)."""
    parts = {part: max(0, breakdown.get(part, 0)) for part in PARTS}
    if estimate:
        parts["buffers"] += breakdown.get("temporaries", 0)
    return parts


def _short(p: Point) -> str:
    return p.strategy if p.micro_batch is None else f"{p.strategy} mb={p.micro_batch}"


def losses(points: list[Point], path: Path) -> bool:
    """Loss per step for every run that recorded one."""
    curves = [p for p in points if len(p.losses) > 1]
    if not curves:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for p in curves:
        ax.plot(range(1, len(p.losses) + 1), p.losses, label=_short(p), linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Loss curves")
    ax.legend(fontsize="x-small", ncol=2)
    return _save(plt, fig, path)


def scaling(points: list[Point], path: Path) -> bool:
    """tokens/s against ranks, for every strategy measured at more than one size."""
    series: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        if p.tokens_per_s and p.ranks:
            series[p.strategy][p.ranks].append(p.tokens_per_s)
    lines = {s: sizes for s, sizes in series.items() if len(sizes) > 1}
    if not lines:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, sizes in lines.items():
        ranks = sorted(sizes)
        ax.plot(ranks, [statistics.median(sizes[r]) for r in ranks], marker="o", label=strategy)
    ax.set_xlabel("ranks")
    ax.set_ylabel("tokens/s")
    ax.set_xticks(sorted({r for sizes in lines.values() for r in sizes}))
    ax.set_title("Scaling")
    ax.legend(fontsize="small")
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
