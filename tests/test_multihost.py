"""Jobs across real hosts: two network namespaces, each with its own hostname and sshd.

Every transport that starts ranks from here (ssh, pdsh, OpenMPI, horovodrun) trains across both
hosts; a rank killed or stopped on host 2 ends the job on host 1 within 10 s; Ctrl-C leaves nothing
on any host; doctor tells a host without sshd; hostile --env values arrive verbatim and run nothing.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from launcher import entrypoints
from launcher.errors import STALLED_EXIT
from launcher.node import progress

from .launching import job_pids, launchdeck, payload_pid, result, start, wait_for
from .test_transports import HOSTILE_VALUES

pytestmark = [pytest.mark.slow, pytest.mark.multihost]
TEARDOWN_LIMIT_S = 10.0


def cluster_args(cluster, tmp_path: Path, transport: str, slots: int = 1, run: str = "run") -> list[str]:
    hostfile = tmp_path / f"hosts-{slots}"
    hostfile.write_text(cluster.hostfile(slots))
    return ["--cpu", "--hostfile", str(hostfile), "--launcher", transport, "--network-interface", cluster.interface,
            "--run-dir", str(tmp_path / run)]


@pytest.mark.parametrize("transport, strategy, slots", [
    ("ssh", "ddp", 2), ("ssh", "zero2", 1),
    ("pdsh", "ddp", 1), ("pdsh", "zero3", 2),
    ("openmpi", "ddp", 2), ("openmpi", "zero1", 1),
    ("horovodrun", "horovod", 2), ("horovodrun", "zero2", 1),
])
def test_trains_across_two_hosts(cluster, tmp_path, transport, strategy, slots):
    done = launchdeck("launch", strategy, "--steps", "8", *cluster_args(cluster, tmp_path, transport, slots),
                      cwd=tmp_path, env=cluster.env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = result(tmp_path / "run")
    assert r["world_size"] == 2 * slots and r["steps"] == 8
    assert sorted(set(r["rank_hosts"])) == [h.name for h in cluster.hosts]  # each host ran its share
    assert all(math.isfinite(x) for x in r["losses"]) and r["loss_last"] < r["loss_first"] - 0.3
    if strategy in ("ddp", "horovod"):
        assert r["params_identical"] is True
    logs = tmp_path / "run" / "logs"
    assert {p.name for p in logs.glob("rank*.log")} >= {f"rank{i}.log" for i in range(2 * slots)}
    assert not any(job_pids(cluster, h, tmp_path / "run") for h in cluster.hosts)


def _run_until_training(cluster, tmp_path, transport: str, *extra: str) -> tuple[subprocess.Popen, Path]:
    run_dir = tmp_path / "run"
    args = ["launch", "ddp", "--steps", "100000", "--set", "training.log_interval=1",
            *cluster_args(cluster, tmp_path, transport, slots=2), *extra]
    proc = start(*args, cwd=tmp_path, log=tmp_path / "launcher.out", env=cluster.env())
    training = lambda: "step " in _text(run_dir / "logs" / "rank0.log") or proc.poll() is not None  # noqa: E731
    assert wait_for(training, 240, 0.3) and proc.poll() is None, _text(tmp_path / "launcher.out")[-3000:]
    return proc, run_dir


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


@pytest.mark.parametrize("how, transport", [
    ("kill", "ssh"), ("kill", "pdsh"), ("kill", "openmpi"), ("kill", "horovodrun"),
    ("stop", "ssh"), ("stop", "openmpi"),
])
def test_a_rank_failing_on_host_2_ends_the_job_on_host_1(cluster, tmp_path, how, transport):
    proc, run_dir = _run_until_training(cluster, tmp_path, transport)
    host1, host2 = cluster.hosts
    victim = payload_pid(cluster, host2, run_dir, rank=3)
    assert victim and job_pids(cluster, host1, run_dir)
    struck = time.monotonic()
    os.kill(victim, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
    assert wait_for(lambda: not job_pids(cluster, host1, run_dir), TEARDOWN_LIMIT_S), "host 1 still runs the job"
    teardown_s = time.monotonic() - struck
    assert proc.wait(timeout=30) == 1  # no rank exit code to pass on (killed by a signal, or hung)
    out = _text(tmp_path / "launcher.out")
    expected = "signal SIGKILL" if how == "kill" else "hung: stopped for"
    assert f"rank 3 on {host2.ip}: {expected}" in out, out[-3000:]
    # the launcher returns when its own command ends; under pdsh/mpirun/horovodrun host 2's agents learn
    # of it from their broken stream (within a heartbeat) and then tear down: the same bound as host 1
    assert wait_for(lambda: not job_pids(cluster, host2, run_dir), TEARDOWN_LIMIT_S), "host 2 still runs the job"
    outcome = json.loads((run_dir / "outcome.json").read_text())
    assert outcome["failure"]["rank"] == 3 and outcome["failure"]["host"] == host2.ip
    print(f"{how} on host 2 via {transport}: host 1 clean after {teardown_s:.2f} s")


def test_a_frozen_node_is_lost_ends_the_job_and_its_processes_are_reaped(cluster, tmp_path):
    proc, run_dir = _run_until_training(cluster, tmp_path, "ssh", "--heartbeat-timeout", "3")
    host1, host2 = cluster.hosts
    cmdline = lambda pid: Path(f"/proc/{pid}/cmdline").read_bytes()  # noqa: E731
    (agent,) = [pid for pid in job_pids(cluster, host2, run_dir) if entrypoints.AGENT.encode() in cmdline(pid)]
    os.kill(agent, signal.SIGSTOP)  # the node's watchdog itself stops answering (as a frozen host would)
    assert wait_for(lambda: not job_pids(cluster, host1, run_dir), TEARDOWN_LIMIT_S), "host 1 still runs the job"
    assert proc.wait(timeout=30) != 0
    assert f"{host2.ip}: stopped answering: no heartbeat for" in _text(tmp_path / "launcher.out")
    assert wait_for(lambda: not job_pids(cluster, host2, run_dir), 5), "the frozen node was not reaped"


def test_ctrl_c_stops_exactly_this_job_on_every_host(cluster, tmp_path):
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(600)\n")
    bystander = start("launch", "ddp", *cluster_args(cluster, tmp_path, "ssh", run="bystander"), "--", "sleeper.py",
                      cwd=tmp_path, log=tmp_path / "bystander.out", env=cluster.env())
    on_every_host = lambda run: all(job_pids(cluster, h, tmp_path / run) for h in cluster.hosts)  # noqa: E731
    try:
        assert wait_for(lambda: on_every_host("bystander"), 60), _text(tmp_path / "bystander.out")
        proc, run_dir = _run_until_training(cluster, tmp_path, "ssh")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert wait_for(lambda: not any(job_pids(cluster, h, run_dir) for h in cluster.hosts), TEARDOWN_LIMIT_S)
        assert on_every_host("bystander") and bystander.poll() is None  # the other job on the same hosts lives on
    finally:
        bystander.send_signal(signal.SIGINT)
        assert bystander.wait(timeout=30) == 130


STALL_S = 5.0


@pytest.mark.parametrize("transport, strategy", [("ssh", "ddp"), ("ssh", "zero3"), ("openmpi", "ddp")])
def test_a_stalled_rank_on_host_1_is_reported_with_the_stack_of_every_rank_on_both_hosts(cluster, tmp_path,
                                                                                          transport, strategy):
    run_dir = tmp_path / "run"
    done = launchdeck("launch", strategy, "--steps", "60", "--stall-at", "1:10", "--stall-timeout", f"{STALL_S:g}",
                      *cluster_args(cluster, tmp_path, transport, slots=2), cwd=tmp_path, env=cluster.env())
    ended = time.time()
    assert done.returncode == STALLED_EXIT, done.stdout[-2000:] + done.stderr[-3000:]
    stalled_at = max(progress.read(run_dir / "progress", rank).t for rank in range(4))
    host1, host2 = cluster.hosts
    report = done.stderr[done.stderr.index("launchdeck: job failed"):].splitlines()
    assert f"rank 1 on {host1.ip}: stalled: no rank made progress for" in report[0], report
    ranks = {int(line.split()[1]): line for line in report if line.startswith("  rank ")}
    assert sorted(ranks) == [0, 1, 2, 3]
    assert all(f" on {host1.ip if rank < 2 else host2.ip} " in line and "[py-spy]" in line
               for rank, line in ranks.items())
    assert "BEHIND" in ranks[1] and "stall_drill (train/drills.py:" in ranks[1]
    assert not any("stall_drill" in ranks[rank] or "BEHIND" in ranks[rank] for rank in (0, 2, 3))
    assert {p.name for p in (run_dir / "logs" / "stall").iterdir()} == {f"rank{r}.txt" for r in range(4)}
    assert not any(job_pids(cluster, h, run_dir) for h in cluster.hosts)
    print(f"stall via {transport} ({strategy}): reported {ended - stalled_at:.1f} s after it began "
          f"(--stall-timeout {STALL_S:g})")
    assert ended - stalled_at < 60  # long before any collective timeout (make bench-stall: the times)


def test_doctor_passes_then_reports_a_host_without_sshd(cluster, tmp_path):
    args = cluster_args(cluster, tmp_path, "ssh", slots=2)
    args = args[:args.index("--run-dir")]
    healthy = launchdeck("doctor", *args, cwd=tmp_path, env=cluster.env())
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "all-reduce: ok: 4 ranks on 2 host(s), gloo: sum 10 (expected 10)" in healthy.stdout
    assert healthy.stdout.strip().splitlines()[-1] == "doctor: ok: 2 host(s) ready and all-reduce together"

    down = cluster.hosts[1]
    cluster.stop_sshd(down)
    sick = launchdeck("doctor", *args, cwd=tmp_path, env=cluster.env())
    assert sick.returncode == 1
    row = next(line for line in sick.stdout.splitlines() if line.startswith(down.ip))
    assert "ssh failed" in row and "Connection refused" in row
    assert "doctor: 1 of 2 host(s) not ready" in sick.stdout and "all-reduce" not in sick.stdout

    refused = launchdeck("launch", "ddp", *args, cwd=tmp_path, env=cluster.env())
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert f"preflight: {down.ip}: ssh failed" in refused.stderr


@pytest.mark.parametrize("transport", ["ssh", "pdsh", "openmpi", "horovodrun"])
def test_hostile_env_values_reach_remote_ranks_verbatim(cluster, tmp_path, transport):
    pwned = tmp_path / "PWNED"
    values = [v.format(p=pwned) for v in HOSTILE_VALUES if not (transport == "pdsh" and "%" in v)]
    (tmp_path / "dump.py").write_text(
        "import json, os\nfrom launcher.node import rankenv\n"
        "rank = rankenv.lookup(os.environ, 'RANK')\n"
        "seen = {k: v for k, v in os.environ.items() if k.startswith('HOSTILE_')}\n"
        "open(os.path.join(os.environ['LAUNCHDECK_RUN_DIR'], f'env-{rank}.json'), 'w').write(json.dumps(seen))\n")
    env_args = [arg for i, v in enumerate(values) for arg in ("--env", f"HOSTILE_{i}={v}")]
    done = launchdeck("launch", "ddp", *cluster_args(cluster, tmp_path, transport), *env_args, "--", "dump.py",
                      cwd=tmp_path, env=cluster.env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for rank in (0, 1):
        seen = json.loads((tmp_path / "run" / f"env-{rank}.json").read_text())
        assert [seen[f"HOSTILE_{i}"] for i in range(len(values))] == values
    assert not pwned.exists()


@pytest.mark.parametrize("transport, strategy", [("pdsh", "zero3"), ("horovodrun", "horovod")])
def test_a_rank_lost_on_host_2_restarts_the_job_on_both_hosts_from_its_checkpoint(cluster, tmp_path, transport,
                                                                                  strategy):
    run_dir = tmp_path / "run"
    done = launchdeck("launch", strategy, "--steps", "12", "--save-every", "5", "--max-restarts", "1",
                      "--crash-at", "3:8", *cluster_args(cluster, tmp_path, transport, slots=2), cwd=tmp_path,
                      env=cluster.env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first, second = json.loads((run_dir / "outcome.json").read_text())["attempts"]
    host1, host2 = cluster.hosts
    assert (first["failure"]["rank"], first["failure"]["host"], first["failure"]["exit_code"]) == (3, host2.ip, 17)
    assert second["resumed_from_step"] == 5 and second["hosts"] == first["hosts"]
    r = result(run_dir)
    assert (r["start_step"], r["world_size"], sorted(set(r["rank_hosts"]))) == (5, 4, [h.name for h in cluster.hosts])
    assert not any(job_pids(cluster, h, run_dir) for h in cluster.hosts)


def test_a_lost_host_is_left_out_and_training_goes_on_at_the_smaller_size(cluster, tmp_path):
    """--min-nodes 1: host 2 dies whole (every process in it, sshd too); the restart runs on host 1 alone at world
    2 with the same global batch, from a universal checkpoint of the ZeRO-2 state saved at world 4."""
    from .netns_cluster import _kill_netns_processes

    run_dir = tmp_path / "run"
    args = ["launch", "zero2", "--steps", "30", "--save-every", "5", "--max-restarts", "1", "--min-nodes", "1",
            "--heartbeat-timeout", "3", "--set", "training.log_interval=1",
            *cluster_args(cluster, tmp_path, "ssh", slots=2)]
    proc = start(*args, cwd=tmp_path, log=tmp_path / "launcher.out", env=cluster.env())
    past_checkpoint = lambda: (p := progress.read(run_dir / "progress", 0)) and p.done >= 7  # noqa: E731
    assert wait_for(past_checkpoint, 240, 0.05), _text(tmp_path / "launcher.out")[-3000:]
    host1, host2 = cluster.hosts
    struck = time.time()
    _kill_netns_processes(host2.netns)
    archived = lambda: (run_dir / "logs" / "attempt-1").is_dir()  # noqa: E731 (then progress/ is the restart's)
    stepped = lambda: (p := progress.read(run_dir / "progress", 0)) and p.done >= 1  # noqa: E731
    assert wait_for(archived, 300, 0.05) and wait_for(stepped, 300, 0.05), _text(tmp_path / "launcher.out")[-4000:]
    first_step_s = time.time() - struck  # to the first step the restarted job finished
    assert proc.wait(timeout=300) == 0, _text(tmp_path / "launcher.out")[-4000:]
    first, second = json.loads((run_dir / "outcome.json").read_text())["attempts"]
    assert first["world_size"] == 4 and second["world_size"] == 2 and second["hosts"] == [host1.ip]
    assert second["global_batch"] == first["global_batch"] and second["resumed_from_step"] >= 5
    assert host2.ip in second["left_out"]
    r = result(run_dir)
    assert r["world_size"] == 2 and set(r["rank_hosts"]) == {host1.name} and r["steps"] == 30
    assert json.loads((run_dir / "config.json").read_text())["gradient_accumulation_steps"] == 2
    rank0 = _text(run_dir / "logs" / "rank0.log")
    assert "loading it as a DeepSpeed universal checkpoint" in rank0 and "saved at world size 4, now 2" in rank0
    assert all(math.isfinite(x) for x in r["losses"])
    assert not job_pids(cluster, host1, run_dir)
    print(f"host 2 killed: attempt 2 on {host1.ip} at world 2 resumed from step {second['resumed_from_step']}; "
          f"from the kill to its first step {first_step_s:.1f} s")
