"""Dry-run planning time for 10,000 nodes (hostfile and SLURM list), whole CLI process, median of 5."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import LAUNCHDECK, timed

NODES = 10_000


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        hostfile = Path(tmp) / "hosts"
        hostfile.write_text("".join(f"node{i:05d} slots=8\n" for i in range(NODES)))
        cases = {
            "hostfile, ssh": ([*LAUNCHDECK, "launch", "zero3", "--hostfile", str(hostfile), "--launcher", "ssh"], {}),
            "hostfile, torchrun": ([*LAUNCHDECK, "launch", "zero3", "--hostfile", str(hostfile), "--launcher",
                                    "torchrun"], {}),
            "SLURM list, slurm": ([*LAUNCHDECK, "launch", "zero3", "--launcher", "slurm"],
                                  {"SLURM_JOB_NODELIST": f"node[00000-{NODES - 1:05d}]", "SLURM_TASKS_PER_NODE":
                                   f"8(x{NODES})"}),
        }
        for label, (argv, env) in cases.items():
            times = []
            for i in range(5):
                seconds, done = timed([*argv, "--dry-run", "--json", "--run-dir", f"{tmp}/run{i}"],
                                      {**os.environ, **env})
                assert done.returncode == 0, done.stderr
                times.append(seconds)
            print(f"{label:<20} {NODES} nodes: median {statistics.median(times):.3f} s, max {max(times):.3f} s "
                  f"(plan JSON {len(done.stdout) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
