"""`make smoke`: every catalog strategy, a few steps on 2 CPU ranks, one table."""

from __future__ import annotations

import sys
import time

from common import LAUNCHDECK, REPO, read_result, table, timed

from launcher.spec.catalog import names


def main(steps: int = 12) -> int:
    root = REPO / "runs" / f"smoke-{time.strftime('%Y%m%d-%H%M%S')}"
    rows, failed = [], 0
    for name in names():
        seconds, done = timed([*LAUNCHDECK, "launch", name, "--cpu", "--nproc", "2", "--steps", str(steps),
                               "--run-dir", str(root / name)])
        r = read_result(root / name)
        ok = done.returncode == 0 and r is not None and r["loss_last"] < r["loss_first"]
        failed += not ok
        loss = f"{r['loss_first']:.3f} → {r['loss_last']:.3f}" if r else "-"
        rate = f"{r['steps_per_s']:.2f}" if r else "-"
        note = "" if ok else (done.stderr.strip().splitlines() or [f"rc {done.returncode}"])[-1][:80]
        rows.append([name, "ok" if ok else "FAIL", loss, rate, f"{seconds:.1f}", note])
        print(f"{name}: {'ok' if ok else 'FAIL'}", file=sys.stderr, flush=True)
    report = table(["strategy", "ok", "loss first → last", "steps/s", "wall s", "note"], rows)
    print(report)
    (root / "smoke.md").write_text(report + "\n")
    print(f"\nrun records: {root}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 12))
