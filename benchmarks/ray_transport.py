"""`make bench-ray` (root): the Ray transport on a real Ray cluster across two fake hosts, measured.

The cluster of the tests (:mod:`tests.ray_cluster`): head on host 1, worker node on host 2, one CPU each, this
machine joined with none. Per strategy (ddp, zero2 through Ray Train; horovod through horovod.ray): world size,
loss first → last, time to first step, wall time. Launch overhead: the same trivial 2-rank script (join a gloo
group, barrier, leave) through ``--launcher ssh`` and ``--launcher ray`` on the same two hosts, alternated,
ROUNDS each. Memory: each Ray node's processes, as PSS (shared pages split among their users), idle after the
start and again after the jobs (Ray keeps idle workers warm). Writes runs/bench-ray-<time>/report.md.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from common import LAUNCHDECK, REPO, number, read_result, table, timed, write_report

sys.path.insert(0, str(REPO))
from tests.netns_cluster import FakeCluster  # noqa: E402
from tests.ray_cluster import RayCluster  # noqa: E402

STRATEGIES = ["ddp", "zero2", "horovod"]
STEPS = 20
ROUNDS = int(os.environ.get("ROUNDS", "3"))
TRIVIAL = REPO / "benchmarks" / "trivial.py"


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))
    return total / 1024


def node_memory(ray: RayCluster) -> dict[str, tuple[int, float]]:
    """Ray node -> (processes, PSS MB): a fake host's namespace holds its node alone; the rest is this machine's."""
    per_host = {host.name: ray.fake.pids(host) for host in ray.fake.hosts}
    on_hosts = {pid for pids in per_host.values() for pid in pids}
    per_host["here (no CPUs)"] = [pid for pid in ray.ray_pids() if pid not in on_hosts]
    return {name: (len(pids), pss_mb(pids)) for name, pids in per_host.items()}


def args(ray: RayCluster, transport: str, run_dir: Path, hostfile: Path) -> list[str]:
    where = ["--ray-address", ray.address] if transport == "ray" else ["--hostfile", str(hostfile)]
    return ["--cpu", "--launcher", transport, *where, "--network-interface", ray.fake.interface,
            "--run-dir", str(run_dir)]


def train_row(ray: RayCluster, root: Path, strategy: str) -> list[str]:
    run_dir = root / f"ray-{strategy}"
    wall, done = timed([*LAUNCHDECK, "launch", strategy, "--steps", str(STEPS), *args(ray, "ray", run_dir, root)],
                       env=ray.env())
    r = read_result(run_dir) or {}
    loss = f"{r['loss_first']:.3f} → {r['loss_last']:.3f}" if r else "-"
    hosts = ", ".join(sorted(set(r.get("rank_hosts", []))))
    return [strategy, "ok" if done.returncode == 0 else f"rc {done.returncode}", str(r.get("world_size", "-")),
            hosts, loss, number(r.get("time_to_first_step_s")), number(wall, 1)]


def overhead(ray: RayCluster, root: Path) -> dict[str, list[float]]:
    hostfile = root / "hosts"
    hostfile.write_text(ray.fake.hostfile(1))
    times: dict[str, list[float]] = {"ssh": [], "ray": []}
    for n in range(ROUNDS):
        for transport in times:
            run_dir = root / f"trivial-{transport}-{n}"
            wall, done = timed([*LAUNCHDECK, "launch", "ddp", *args(ray, transport, run_dir, hostfile), "--",
                                str(TRIVIAL)], env=ray.env())
            if done.returncode:
                raise SystemExit(f"{transport} round {n} failed: {done.stderr[-2000:]}")
            times[transport].append(wall)
    return times


def main() -> int:
    root = REPO / "runs" / f"bench-ray-{time.strftime('%Y%m%d-%H%M%S')}"
    root.mkdir(parents=True)
    with FakeCluster(n_hosts=2, prefix="ldbray", subnet=249) as fake, RayCluster(fake, cpus=1) as ray:
        time.sleep(5)  # let the nodes settle (their agents start after `ray start` returns)
        idle = node_memory(ray)
        train = [train_row(ray, root, strategy) for strategy in STRATEGIES]
        times = overhead(ray, root)
        warm = node_memory(ray)
    ssh, via_ray = statistics.median(times["ssh"]), statistics.median(times["ray"])
    memory = [[name, str(idle[name][0]), number(idle[name][1], 0), str(warm[name][0]), number(warm[name][1], 0)]
              for name in idle]
    report = "\n".join([
        f"# launchdeck on Ray ({time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} cores shared by every "
        "fake host; Ray head on host 1, worker node on host 2, one CPU each)", "",
        f"## Training through Ray ({STEPS} steps, tiny model, 2 CPU ranks)", "",
        table(["strategy", "ok", "world", "rank hosts", "loss", "first step (rank) s", "wall s"], train), "",
        f"## Launch overhead: a trivial 2-rank gloo job, median of {ROUNDS} alternated rounds", "",
        table(["transport", "median s", "all s"], [[t, number(statistics.median(v)), " ".join(number(x) for x in v)]
                                                   for t, v in times.items()]), "",
        f"Ray costs {via_ray - ssh:+.2f} s per launch over ssh ({via_ray / ssh:.1f}x).", "",
        "## Memory of each Ray node (PSS, MB)", "",
        table(["node", "processes idle", "idle MB", "processes after the jobs", "after the jobs MB"], memory), ""])
    write_report(root, report, {"train": train, "overhead": times, "memory": memory})
    return 0


if __name__ == "__main__":
    sys.exit(main())
