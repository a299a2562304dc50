"""`make bench-overhead`: what launchdeck adds over plain torchrun for a trivial 2-rank gloo job.

Alternating pairs of `launchdeck launch ddp --cpu --nproc 2 --run-dir NEW -- trivial.py` and
`torchrun --standalone --nproc_per_node 2 trivial.py`; reports the median of the per-pair ratios, for
ROUNDS rounds (default 3) of PAIRS pairs (default 5). Each side's time is the whole command, start to exit.
"""

from __future__ import annotations

import compileall
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import LAUNCHDECK, REPO, timed

TRIVIAL = str(REPO / "benchmarks" / "trivial.py")
TORCHRUN = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2", TRIVIAL]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def pairs(root: Path, count: int) -> dict:
    """``count`` alternating pairs; each pair's ratio is launchdeck's seconds over torchrun's."""
    ours, plain = [], []
    for i in range(count):
        seconds, done = timed([*LAUNCHDECK, "launch", "ddp", "--cpu", "--nproc", "2", "--run-dir",
                               str(root / f"trivial-{len(ours)}-{i}"), "--", TRIVIAL], ENV)
        assert done.returncode == 0, done.stderr
        ours.append(seconds)
        seconds, done = timed(TORCHRUN, ENV)
        assert done.returncode == 0, done.stderr
        plain.append(seconds)
    ratios = [a / b for a, b in zip(ours, plain, strict=True)]
    return {"launchdeck_s": ours, "torchrun_s": plain, "ratios": ratios, "median_ratio": statistics.median(ratios)}


def main() -> int:
    rounds, count = int(os.environ.get("ROUNDS", 3)), int(os.environ.get("PAIRS", 5))
    # As an installed package runs: bytecode compiled (torch's is, since pip installed it; an editable
    # launchdeck under PYTHONDONTWRITEBYTECODE=1 would otherwise compile ~30 modules on every launch).
    compileall.compile_dir(str(REPO / "launcher"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="launchdeck-overhead-") as tmp:
        results = [pairs(Path(tmp) / f"round{r}", count) for r in range(rounds)]
    for r in results:
        print(f"median ratio {r['median_ratio']:.3f}  launchdeck {statistics.median(r['launchdeck_s']):.2f} s  "
              f"torchrun {statistics.median(r['torchrun_s']):.2f} s")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
