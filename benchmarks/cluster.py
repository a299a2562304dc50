"""`make bench-cluster` (root): jobs across two fake hosts and on a real Slurm cluster, measured.

Per transport: world size, loss first → last, time to first step (the rank's own, and from the
launch command to the first step line), wall time. Teardown: how long host 1 keeps the job after a
rank on host 2 is killed or stopped. Slurm: salloc → first step, and what a user sees when a rank
fails. Writes runs/bench-cluster-<time>/report.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import LAUNCHDECK, REPO, number, read_result, table, write_report

sys.path.insert(0, str(REPO))
from tests.launching import job_pids, payload_pid, wait_for  # noqa: E402
from tests.netns_cluster import FakeCluster  # noqa: E402
from tests.slurm_cluster import SlurmCluster  # noqa: E402

TRAIN = [("ssh", "ddp"), ("ssh", "zero2"), ("pdsh", "ddp"), ("pdsh", "zero3"), ("openmpi", "ddp"),
         ("openmpi", "zero1"), ("horovodrun", "horovod"), ("horovodrun", "zero2")]
FAULTS = [("kill", "ssh"), ("kill", "pdsh"), ("kill", "openmpi"), ("kill", "horovodrun"), ("stop", "ssh"),
          ("stop", "pdsh"), ("stop", "openmpi"), ("stop", "horovodrun")]
STEPS = 20


def first_step_line(run_dir: Path) -> bool:
    log = run_dir / "logs" / "rank0.log"
    return log.is_file() and "step " in log.read_text(errors="replace")


def launch(argv: list[str], run_dir: Path, env: dict, cwd: Path) -> tuple[subprocess.Popen, float | None, float]:
    """Start a launch; returns it, seconds to rank 0's first step line, and when it started."""
    started = time.monotonic()
    with open(run_dir.parent / f"{run_dir.name}.out", "w") as out:  # a file: a pipe nobody reads could fill up
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    seen = wait_for(lambda: first_step_line(run_dir) or proc.poll() is not None, 600, 0.05)
    return proc, (time.monotonic() - started if seen and first_step_line(run_dir) else None), started


def cluster_argv(c: FakeCluster, root: Path, transport: str, strategy: str, run_dir: Path, steps: int) -> list[str]:
    hostfile = root / "hosts"
    hostfile.write_text(c.hostfile(2))
    return [*LAUNCHDECK, "launch", strategy, "--cpu", "--steps", str(steps), "--set", "training.log_interval=1",
            "--hostfile", str(hostfile), "--launcher", transport, "--network-interface", c.interface,
            "--run-dir", str(run_dir)]


def train_row(c: FakeCluster, root: Path, transport: str, strategy: str) -> list[str]:
    run_dir = root / f"{transport}-{strategy}"
    proc, to_step, started = launch(cluster_argv(c, root, transport, strategy, run_dir, STEPS), run_dir, c.env(), root)
    code, wall = proc.wait(), time.monotonic() - started
    r = read_result(run_dir) or {}
    hosts = len(set(r.get("rank_hosts", [])))
    loss = f"{r['loss_first']:.3f} → {r['loss_last']:.3f}" if r else "-"
    return [transport, strategy, "ok" if code == 0 else f"rc {code}", f"{r.get('world_size', '-')} on {hosts} hosts",
            loss, number(r.get("time_to_first_step_s")), number(to_step), number(wall, 1)]


def fault_row(c: FakeCluster, root: Path, how: str, transport: str) -> list[str]:
    run_dir = root / f"{how}-{transport}"
    proc, _, _ = launch(cluster_argv(c, root, transport, "ddp", run_dir, 100_000), run_dir, c.env(), root)
    victim = wait_for(lambda: payload_pid(c, c.hosts[1], run_dir, 3), 30)
    if victim is None:
        proc.kill()
        return [how, transport, "-", "-", "-", "rank 3 never started on host 2"]
    struck = time.monotonic()
    os.kill(victim, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
    wait_for(lambda: not job_pids(c, c.hosts[0], run_dir), 60, 0.05)
    host1_s = time.monotonic() - struck
    code = proc.wait(timeout=60)
    done_s = time.monotonic() - struck
    output = (run_dir.parent / f"{run_dir.name}.out").read_text(errors="replace")
    report = next((ln for ln in output.splitlines() if "job failed" in ln), "")
    return [how, transport, number(host1_s), number(done_s), str(code), report.split(": ", 2)[-1][:70]]


def slurm_rows(root: Path) -> list[list[str]]:
    rows = []
    with SlurmCluster(nodes=2, cpus_per_node=4) as s:
        for name, extra in (("train", []), ("rank 3 fails at step 3", ["--crash-at", "3:3"])):
            run_dir = root / f"slurm-{len(rows)}"
            argv = ["salloc", "-N2", "--ntasks-per-node=2", *LAUNCHDECK, "launch", "ddp", "--cpu", "--launcher",
                    "slurm", "--master-addr", "127.0.0.1", "--steps", str(STEPS), "--set", "training.log_interval=1",
                    "--run-dir", str(run_dir), *extra]
            proc, to_step, started = launch(argv, run_dir, s.client_env(), root)
            code, wall = proc.wait(), time.monotonic() - started
            r = read_result(run_dir) or {}
            rows.append([name, str(code), str(r.get("world_size", "-")), number(to_step), number(wall, 1)])
    return rows


def main() -> int:
    root = REPO / "runs" / f"bench-cluster-{time.strftime('%Y%m%d-%H%M%S')}"
    root.mkdir(parents=True)
    with FakeCluster(n_hosts=2, prefix="ldbench", subnet=250) as c:
        train = [train_row(c, root, t, s) for t, s in TRAIN]
        faults = [fault_row(c, root, how, t) for how, t in FAULTS]
    slurm = slurm_rows(root)
    report = "\n".join([
        f"# launchdeck across hosts ({time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} cores shared by every "
        "fake host, CPU, 2 hosts x 2 ranks)", "",
        f"## Training across two hosts ({STEPS} steps, tiny model)", "",
        table(["transport", "strategy", "ok", "world", "loss", "first step (rank) s", "launch → first step s",
               "wall s"], train), "",
        "## Teardown after a rank on host 2 is killed (SIGKILL) or stopped (SIGSTOP; --hang-timeout 5)", "",
        table(["fault", "transport", "host 1 clean s", "launcher exit s", "exit code", "report"], faults), "",
        "## Slurm: salloc -N2 --ntasks-per-node=2 launchdeck launch ddp --launcher slurm", "",
        table(["run", "exit code", "world", "salloc → first step s", "wall s"], slurm), ""])
    write_report(root, report, {"train": train, "faults": faults, "slurm": slurm})
    return 0


if __name__ == "__main__":
    sys.exit(main())
