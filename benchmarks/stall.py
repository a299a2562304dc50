"""`make bench-stall`: the stall watch, measured.

- Drills: `--stall-at 1:10` on 2 local ranks (and, as root, on two network-namespace hosts x 2 ranks over
  ssh) for ddp and zero3: seconds from the stall (the last progress record written) to the report, the
  report's stack line per rank, processes left.
- No false stall: zero3-offload with a checkpoint every 5 steps, RUNS times with the default limit and
  RUNS times with `--stall-timeout TIGHT`: the first step, the longest silence the watch saw, the limit,
  the outcome.
- The heartbeats' cost: the payload's steps/s with progress records and without (`--stall-timeout 0`),
  alternated in pairs; and the cost of one record update, timed directly.

    python benchmarks/stall.py [--runs 10] [--repeats 3] [--pairs 5] [--timeout 10] [--tight 2]
                                [--parts drills,calm,cost]

Writes runs/bench-stall-<time>/report.md and report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import timeit
from pathlib import Path

from common import LAUNCHDECK, REPO, read_result, table, timed

sys.path.insert(0, str(REPO))
from launcher.node import progress  # noqa: E402
from tests.launching import processes_of  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def stalled_at(run_dir: Path, world: int) -> float:
    """When the last rank last moved (this machine's clock; hosts of the fake cluster share it)."""
    return max(progress.read(run_dir / "progress", rank).t for rank in range(world))


def drill(root: Path, name: str, strategy: str, timeout: float, extra: list[str], env: dict, world: int,
          left: callable) -> dict:
    run_dir = root / name
    argv = [*LAUNCHDECK, "launch", strategy, "--steps", "200", "--stall-at", "1:10", "--stall-timeout",
            f"{timeout:g}", "--run-dir", str(run_dir), *extra]
    _, done = timed(argv, env)
    ended = time.time()
    report = done.stderr[done.stderr.find("launchdeck: job failed"):].splitlines()
    return {"name": name, "strategy": strategy, "exit": done.returncode, "seconds": ended - stalled_at(run_dir, world),
            "limit": timeout, "headline": report[0] if report else done.stderr[-500:],
            "stacks": [line.strip() for line in report if line.startswith("  rank ")], "left": left(run_dir)}


def local_drills(root: Path, timeout: float, repeats: int) -> list[dict]:
    return [drill(root, f"local-{strategy}-{i}", strategy, timeout, ["--cpu"], ENV, 2, lambda r: len(processes_of(r)))
            for strategy in ("ddp", "zero3") for i in range(repeats)]


def cluster_drills(root: Path, timeout: float, repeats: int) -> list[dict]:
    """Two network-namespace hosts x 2 ranks over ssh (root only)."""
    from tests.launching import job_pids
    from tests.netns_cluster import FakeCluster

    found = []
    with FakeCluster(n_hosts=2, prefix="ldstall", subnet=251) as cluster:
        hostfile = root / "hosts"
        hostfile.write_text(cluster.hostfile(2))
        extra = ["--cpu", "--hostfile", str(hostfile), "--launcher", "ssh", "--network-interface", cluster.interface]
        left = lambda r: sum(len(job_pids(cluster, h, r)) for h in cluster.hosts)  # noqa: E731
        for strategy in ("ddp", "zero3"):
            found += [drill(root, f"2hosts-{strategy}-{i}", strategy, timeout, extra, {**ENV, **cluster.env()}, 4,
                            left) for i in range(repeats)]
    return found


def no_false_stall(root: Path, runs: int, limit: str | None) -> list[dict]:
    """``runs`` normal runs with the default limit (``limit`` None) or ``--stall-timeout LIMIT``."""
    rows, extra = [], ["--stall-timeout", limit] if limit else []
    for i in range(runs):
        run_dir = root / f"offload-{limit or 'default'}-{i}"
        seconds, done = timed([*LAUNCHDECK, "launch", "zero3-offload", "--cpu", "--steps", "30", "--save-every", "5",
                               "--run-dir", str(run_dir), *extra], ENV)
        outcome = json.loads((run_dir / "outcome.json").read_text())
        result = read_result(run_dir) or {}
        rows.append({"exit": done.returncode, "stalled": outcome["stalled"], "wall_s": seconds,
                     "first_step_s": (result.get("step_seconds") or [None])[0], **outcome["progress"]})
    return rows


def heartbeat_cost(root: Path, pairs: int, steps: int = 150) -> dict:
    speeds: dict[str, list[float]] = {"records": [], "none": []}
    for i in range(pairs):
        for side, extra in (("records", []), ("none", ["--stall-timeout", "0"])):
            run_dir = root / f"cost-{side}-{i}"
            done = timed([*LAUNCHDECK, "launch", "ddp", "--cpu", "--steps", str(steps), "--run-dir", str(run_dir),
                          *extra], ENV)[1]
            assert done.returncode == 0, done.stderr[-2000:]
            speeds[side].append(read_result(run_dir)["steps_per_s"])
    reporter = progress.Reporter(root / "records", 0)
    per_step_us = timeit.timeit(lambda: (reporter.begin(1), reporter.finished_step(1)), number=20000) / 20000 * 1e6
    ratio = statistics.median(speeds["records"]) / statistics.median(speeds["none"])
    return {**speeds, "ratio": ratio, "record_us_per_step": per_step_us}


def render(drills: list[dict], calm: dict[str, list[dict]], cost: dict) -> str:
    lines = ["# Stall watch", "", "## Drills: `--stall-at 1:10`", ""]
    lines.append(table(["run", "exit", "stall → report (s)", "limit (s)", "ratio", "processes left"],
                       [[d["name"], d["exit"], f"{d['seconds']:.1f}", f"{d['limit']:g}",
                         f"{d['seconds'] / d['limit']:.2f}", d["left"]] for d in drills]))
    for d in drills[:1] + [d for d in drills if d["name"].startswith("2hosts-zero3")][:1]:
        lines += ["", f"`{d['name']}`:", "", "```", d["headline"], *d["stacks"], "```"]
    for limit, rows in calm.items():
        lines += ["", f"## No false stall: zero3-offload, checkpoint every 5 steps, {limit} limit", ""]
        lines.append(table(["run", "exit", "stalled", "first step (s)", "longest silence (s)", "limit (s)", "wall (s)"],
                           [[i, r["exit"], r["stalled"], f"{r['first_step_s'] or 0:.2f}", r["longest_silence_s"],
                             r["limit_s"], f"{r['wall_s']:.1f}"] for i, r in enumerate(rows)]))
    if not cost:
        return "\n".join(lines) + "\n"
    lines += ["", "## What the heartbeats cost", "",
              f"ddp, 2 CPU ranks: {statistics.median(cost['records']):.2f} steps/s with progress records, "
              f"{statistics.median(cost['none']):.2f} without (`--stall-timeout 0`): ratio {cost['ratio']:.3f} "
              f"(medians of {len(cost['none'])} alternated pairs).",
              f"One step's record updates (begin + finished, two pwrites): {cost['record_us_per_step']:.1f} µs."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=10, help="no-false-stall runs")
    p.add_argument("--repeats", type=int, default=3, help="drills per strategy and place")
    p.add_argument("--pairs", type=int, default=5, help="heartbeat-cost pairs")
    p.add_argument("--timeout", type=float, default=10.0, help="--stall-timeout of the drills")
    p.add_argument("--tight", default="2", help="the explicit --stall-timeout of the second no-false-stall series")
    p.add_argument("--parts", default="drills,calm,cost", help="which parts to run (comma-separated)")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    root = REPO / "runs" / time.strftime("bench-stall-%Y%m%d-%H%M%S", time.gmtime())
    root.mkdir(parents=True)
    drills = local_drills(root, args.timeout, args.repeats) if "drills" in parts else []
    if "drills" in parts and os.geteuid() == 0:
        drills += cluster_drills(root, args.timeout, args.repeats)
    calm = {"default": no_false_stall(root, args.runs, None), f"{args.tight} s": no_false_stall(
        root, args.runs, args.tight)} if "calm" in parts else {}
    cost = heartbeat_cost(root, args.pairs) if "cost" in parts else {}
    (root / "report.json").write_text(json.dumps({"drills": drills, "calm": calm, "cost": cost}, indent=2))
    (root / "report.md").write_text(render(drills, calm, cost))
    print((root / "report.md").read_text())


if __name__ == "__main__":
    main()
