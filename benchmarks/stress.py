"""`make stress`: the trial loops, many times, and a long fuzzing hunt.

    python benchmarks/stress.py [--trials 20] [--fuzz-examples 1500] [--seed 1]

- two launches at the same instant (run directories, ports, records), Ctrl-C of one of two jobs, kill -9
  of a random rank on this machine (tests/trials.py), TRIALS times each;
- as root, kill -9 of a random rank on a random one of two network-namespace hosts, TRIALS times;
- tests/test_fuzz.py with FUZZ_RANDOM=1 and FUZZ_EXAMPLES cases per surface (fresh cases every run).

Writes runs/stress-<time>/report.md and report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import LAUNCHDECK, REPO, table

sys.path.insert(0, str(REPO))
from tests import trials  # noqa: E402
from tests.launching import job_pids, payload_pid, wait_for  # noqa: E402


def local(root: Path, count: int, rng: random.Random) -> dict[str, list[dict]]:
    return {"same instant": [trials.same_instant(root, i) for i in range(count)],
            "ctrl-c one of two": [trials.ctrl_c_one(root, i) for i in range(count)],
            "kill -9 a rank (local)": [trials.kill_rank(root, i, rng) for i in range(count)]}


def two_hosts(root: Path, count: int, rng: random.Random) -> list[dict]:
    """kill -9 of a random rank on a random host of two network-namespace hosts, 2 ranks each, over ssh."""
    from tests.netns_cluster import FakeCluster

    rows = []
    with FakeCluster(n_hosts=2, prefix="ldstress", subnet=252) as cluster:
        hostfile = root / "hosts"
        hostfile.write_text(cluster.hostfile(2))
        for index in range(count):
            rows.append(_kill_on_host(cluster, root / f"hosts-kill-{index}", hostfile, rng.randrange(4), index))
    return rows


def _kill_on_host(cluster, run_dir: Path, hostfile: Path, rank: int, index: int) -> dict:
    host = cluster.hosts[rank // 2]
    argv = [*LAUNCHDECK, "launch", "ddp", "--cpu", "--steps", "100000", "--hostfile", str(hostfile), "--launcher",
            "ssh", "--network-interface", cluster.interface, "--run-dir", str(run_dir)]
    job = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **cluster.env()}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    victim = wait_for(lambda: payload_pid(cluster, host, run_dir, rank), 240, 0.3)
    time.sleep(2.0)  # training, not starting
    struck = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    left = lambda: sum(len(job_pids(cluster, h, run_dir)) for h in cluster.hosts)  # noqa: E731
    gone = wait_for(lambda: job.poll() is not None and not left(), trials.TEARDOWN_S)
    teardown = time.monotonic() - struck
    _, err = job.communicate(timeout=60)
    return {"trial": index, "rank": rank, "exit": job.returncode, "gone": bool(gone), "teardown_s": teardown,
            "named": f"rank {rank} on {host.ip}: signal SIGKILL" in err, "orphans": left()}


def fuzz(examples: int) -> dict:
    env = {**os.environ, "FUZZ_RANDOM": "1", "FUZZ_EXAMPLES": str(examples)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:xdist", "tests/test_fuzz.py"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    counts = dict(re.findall(r"fuzz (.+?): (\d+) generated cases,", done.stdout))
    return {"exit": done.returncode, "counts": {k: int(v) for k, v in counts.items()},
            "failures": re.findall(r"^FAILED .*$", done.stdout, re.M)}


def render(groups: dict[str, list[dict]], found: dict) -> str:
    rows = []
    for name, runs in groups.items():
        failed = [r for r in runs if not _passed(name, r)]
        worst = max((r.get("teardown_s", 0.0) for r in runs), default=0.0)
        collisions = sum(r.get("ports", 2) < 2 or r.get("run_dirs", 2) < 2 for r in runs)
        survivors = sum(r.get("b_moved_after", False) and r.get("b_exit") == 0 for r in runs)
        rows.append([name, len(runs), len(failed), collisions, survivors if "ctrl-c" in name else "-",
                     sum(r.get("orphans", 0) for r in runs), f"{worst:.2f}" if worst else "-"])
    lines = ["# Stress", "", table(["trial", "runs", "failed", "collisions", "survivors", "orphans",
                                    "worst teardown (s)"], rows), "", "## Fuzzing (fresh cases)", ""]
    lines.append(table(["surface", "cases"], [[k, v] for k, v in found["counts"].items()]))
    lines += ["", f"total {sum(found['counts'].values())} cases; pytest exit {found['exit']}; failures: "
              f"{found['failures'] or 'none'}"]
    return "\n".join(lines) + "\n"


def _passed(name: str, row: dict) -> bool:
    if name == "same instant":
        return row["exits"] == [0, 0] and row["run_dirs"] == row["ports"] == row["results"] == 2
    if name.startswith("ctrl-c"):
        return row["a_exit"] == 130 and row["a_gone"] and row["b_moved_after"] and row["b_exit"] == 0
    return row["gone"] and row["named"] and not row["orphans"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--fuzz-examples", type=int, default=1500)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    root = REPO / "runs" / time.strftime("stress-%Y%m%d-%H%M%S", time.gmtime())
    root.mkdir(parents=True)
    rng = random.Random(args.seed)
    groups = local(root, args.trials, rng)
    if os.geteuid() == 0:
        groups["kill -9 a rank (2 hosts)"] = two_hosts(root, args.trials, rng)
    found = fuzz(args.fuzz_examples)
    (root / "report.json").write_text(json.dumps({"trials": groups, "fuzz": found}, indent=2))
    (root / "report.md").write_text(render(groups, found))
    print((root / "report.md").read_text())


if __name__ == "__main__":
    main()
