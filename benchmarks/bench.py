"""`make bench`: launch overhead vs plain torchrun, payload speed under both and against a hand-written loop,
steps/s per strategy, scaling over 1, 2 and 4 ranks.

Writes runs/bench-<time>/report.md (and report.json), and `launchdeck report`'s plots in plots/. Alternates
the two sides of every comparison so drift on a shared machine hits both equally; reports medians.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from common import LAUNCHDECK, REPO, number, read_result, table, timed

from launcher import entrypoints
from launcher.spec.catalog import names

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def launch_overhead(root: Path, repeats: int) -> dict:
    trivial = str(REPO / "benchmarks" / "trivial.py")
    ours, plain = [], []
    for i in range(repeats):
        seconds, done = timed([*LAUNCHDECK, "launch", "ddp", "--cpu", "--nproc", "2",
                               "--run-dir", str(root / f"trivial-{i}"), "--", trivial], ENV)
        assert done.returncode == 0, done.stderr
        ours.append(seconds)
        seconds, done = timed([*TORCHRUN, trivial], ENV)
        assert done.returncode == 0, done.stderr
        plain.append(seconds)
    return {"launchdeck_s": ours, "torchrun_s": plain,
            "ratio": statistics.median(ours) / statistics.median(plain)}


def payload_speed(root: Path, repeats: int, steps: int) -> dict:
    config = root / "ddp-config.json"
    done = timed([*LAUNCHDECK, "render", "ddp", "-n", "2", "--set", f"training.steps={steps}", "-o", str(config)])[1]
    assert done.returncode == 0, done.stderr
    ours, plain = [], []
    for i in range(repeats):
        run = root / f"payload-ld-{i}"
        assert timed([*LAUNCHDECK, "launch", "ddp", "--cpu", "--steps", str(steps), "--run-dir", str(run)],
                     ENV)[1].returncode == 0
        ours.append(read_result(run)["steps_per_s"])
        run = root / f"payload-tr-{i}"
        done = timed([*TORCHRUN, "-m", entrypoints.PAYLOAD, "--engine", "ddp", "--config", str(config), "--steps",
                      str(steps), "--cpu", "--run-dir", str(run)], ENV)[1]
        assert done.returncode == 0, done.stderr
        plain.append(read_result(run)["steps_per_s"])
    return {"launchdeck_steps_per_s": ours, "torchrun_steps_per_s": plain,
            "ratio": statistics.median(ours) / statistics.median(plain)}


HANDLOOP = str(REPO / "benchmarks" / "handloop.py")
HANDLOOP_STRATEGIES = ("ddp", "zero1", "zero2", "zero3", "zero2-offload")


def payload_vs_handloop(root: Path, repeats: int, steps: int) -> list[dict]:
    """Per strategy: the payload's steps/s over a minimal hand-written loop's on the same rendered config
    (the payload run's own config.json), alternating, medians. Goal: >= 0.98."""
    rows = []
    for name in HANDLOOP_STRATEGIES:
        ours, hand = [], []
        for i in range(repeats):
            run = root / f"handloop-{name}-{i}"
            done = timed([*LAUNCHDECK, "launch", name, "--cpu", "--steps", str(steps), "--run-dir", str(run)], ENV)[1]
            assert done.returncode == 0, done.stderr[-2000:]
            ours.append(read_result(run)["steps_per_s"])
            engine = json.loads((run / "config.json").read_text()).get("engine", "deepspeed")
            out = run / "handloop.json"
            done = timed([*TORCHRUN, HANDLOOP, engine, str(run / "config.json"), str(steps), str(out)],
                         {**ENV, "DS_ACCELERATOR": "cpu"})[1]
            assert done.returncode == 0, done.stderr[-2000:]
            hand.append(json.loads(out.read_text())["steps_per_s"])
        rows.append({"strategy": name, "payload_steps_per_s": ours, "handloop_steps_per_s": hand,
                     "ratio": statistics.median(ours) / statistics.median(hand)})
    return rows


SCALING = {"ddp": (1, 2, 4), "zero2": (1, 2, 4)}


def scaling(root: Path, steps: int) -> list[dict]:
    """tokens/s at 1, 2 and 4 CPU ranks (the report's scaling plot); 4 ranks share 2 cores here."""
    rows = []
    for name, sizes in SCALING.items():
        for ranks in sizes:
            run = root / f"scaling-{name}-{ranks}"
            done = timed([*LAUNCHDECK, "launch", name, "--cpu", "--nproc", str(ranks), "--steps", str(steps),
                          "--run-dir", str(run)])[1]
            r = read_result(run) or {}
            rows.append({"strategy": name, "ranks": ranks, "ok": done.returncode == 0,
                         "tokens_per_s": r.get("tokens_per_s")})
    return rows


def strategies(root: Path, steps: int) -> list[dict]:
    rows = []
    for name in names():
        run = root / f"strategy-{name}"
        seconds, done = timed([*LAUNCHDECK, "launch", name, "--cpu", "--steps", str(steps), "--run-dir", str(run)])
        r = read_result(run) or {}
        rows.append({"strategy": name, "ok": done.returncode == 0, "steps_per_s": r.get("steps_per_s"),
                     "tokens_per_s": r.get("tokens_per_s"), "time_to_first_step_s": r.get("time_to_first_step_s"),
                     "peak_mem_mb": r.get("peak_mem_mb"), "wall_s": seconds})
    return rows


def main() -> int:
    root = REPO / "runs" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    root.mkdir(parents=True)
    repeats = int(os.environ.get("BENCH_REPEATS", 7))
    if sys.argv[1:] == ["payload"]:  # just the payload comparison, e.g. to re-measure on a quiet machine
        speed = payload_speed(root, repeats, steps=60)
        print(json.dumps(speed, indent=2))
        return 0
    if sys.argv[1:] == ["handloop"]:  # just the payload vs the hand-written loop
        print(json.dumps(payload_vs_handloop(root, repeats, steps=40), indent=2))
        return 0
    overhead = launch_overhead(root, repeats)
    speed = payload_speed(root, max(3, repeats // 2), steps=60)
    hand = payload_vs_handloop(root, max(3, repeats // 2), steps=40)
    rows = strategies(root, steps=40)
    scale = scaling(root, steps=30)
    lines = [f"# launchdeck bench ({time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} cores, CPU, 2 ranks)", "",
             "## Launch overhead: trivial gloo init + barrier", "",
             f"median launchdeck {statistics.median(overhead['launchdeck_s']):.2f} s vs torchrun "
             f"{statistics.median(overhead['torchrun_s']):.2f} s over {repeats} alternating runs: "
             f"ratio **{overhead['ratio']:.3f}**", "",
             "## Payload speed (ddp, tiny model, 60 steps)", "",
             f"median launchdeck {statistics.median(speed['launchdeck_steps_per_s']):.2f} steps/s vs torchrun "
             f"{statistics.median(speed['torchrun_steps_per_s']):.2f} steps/s: ratio **{speed['ratio']:.3f}**", "",
             "## Payload vs a minimal hand-written loop (same config, tiny model, 40 steps; goal >= 0.98)", "",
             table(["strategy", "payload steps/s", "hand loop steps/s", "ratio"],
                   [[r["strategy"], number(statistics.median(r["payload_steps_per_s"])),
                     number(statistics.median(r["handloop_steps_per_s"])), f"**{r['ratio']:.3f}**"] for r in hand]), "",
             "## Strategies (tiny model, 40 steps)", "",
             table(["strategy", "ok", "steps/s", "tokens/s", "first step s", "peak MB", "wall s"],
                   [[r["strategy"], "ok" if r["ok"] else "FAIL", number(r["steps_per_s"]),
                     number(r["tokens_per_s"], 0), number(r["time_to_first_step_s"]), number(r["peak_mem_mb"], 0),
                     number(r["wall_s"], 1)] for r in rows])]
    report = "\n".join(lines) + "\n"
    (root / "report.md").write_text(report)
    (root / "report.json").write_text(json.dumps({"overhead": overhead, "payload": speed, "handloop": hand,
                                                  "strategies": rows, "scaling": scale}, indent=2) + "\n")
    timed([*LAUNCHDECK, "report", str(root), "-o", str(root / "plots")])  # PNGs of the measured data
    print(report)
    print(f"written: {root / 'report.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
