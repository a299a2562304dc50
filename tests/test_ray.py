"""Jobs on a real Ray cluster: the head in one network-namespace host, a worker node in another, this machine
joined with no CPUs (:mod:`tests.ray_cluster`). One CPU per host, so the two ranks of a job land on two hosts.

The payload trains through Ray Train (ddp, zero2) and horovod.ray (horovod); a user's script runs (doctor's
all-reduce); a rank killed on one host ends the job within 15 s with the report naming it, and Ctrl-C cancels
the job, each leaving no rank on either host; a bad address or a cluster too small is one line and exit 2.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import worker_index
from .launching import job_pids, launchdeck, payload_pid, result, start, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.xdist_group("ray")]
END_LIMIT_S = 15.0  # a killed rank or Ctrl-C: the job is over, the report written, no rank left anywhere
BAD_INPUT_S = 15.0


@pytest.fixture(scope="module")
def ray():
    """One Ray cluster for the module (its start costs ~10 s); torn down also when a test fails."""
    from .netns_cluster import FakeCluster
    from .ray_cluster import RayCluster

    if os.geteuid() != 0:
        pytest.fail("the Ray tests make network namespaces and need root (CI runs as root)")
    with FakeCluster(n_hosts=2, prefix=f"ldr{worker_index()}", subnet=60 + worker_index()) as fake, \
            RayCluster(fake, cpus=1) as cluster:
        yield cluster


def ray_args(ray, tmp_path: Path, run: str = "run") -> list[str]:
    return ["--cpu", "--launcher", "ray", "--ray-address", ray.address, "--network-interface", ray.fake.interface,
            "--run-dir", str(tmp_path / run)]


def nothing_left(ray, run_dir: Path) -> bool:
    return not any(job_pids(ray.fake, host, run_dir) for host in ray.fake.hosts)


@pytest.mark.parametrize("strategy", ["ddp", "zero2", "horovod"])
def test_the_payload_trains_across_the_ray_head_and_worker(ray, tmp_path, strategy):
    began = time.monotonic()
    done = launchdeck("launch", strategy, "--steps", "8", *ray_args(ray, tmp_path), cwd=tmp_path, env=ray.env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = result(tmp_path / "run")
    assert r["world_size"] == 2 and r["steps"] == 8
    assert sorted(r["rank_hosts"]) == [h.name for h in ray.fake.hosts]  # Ray placed one rank on each host
    assert all(math.isfinite(x) for x in r["losses"]) and r["loss_last"] < r["loss_first"] - 0.3
    if strategy in ("ddp", "horovod"):
        assert r["params_identical"] is True
    logs = tmp_path / "run" / "logs"
    assert {p.name for p in logs.glob("rank*.log")} >= {"rank0.log", "rank1.log"}
    job = json.loads((tmp_path / "run" / "ray-job.json").read_text())
    assert job["runner"] == ("horovod" if strategy == "horovod" else "torch") and job["world_size"] == 2
    assert nothing_left(ray, tmp_path / "run")
    print(f"ray {strategy}: world {r['world_size']}, loss {r['loss_first']:.4f} -> {r['loss_last']:.4f}, "
          f"first step after {r['time_to_first_step_s']:.1f} s, {time.monotonic() - began:.1f} s in all")


# A user's script with no parent-death signal of its own: only its agent can stop it and its child.
SLEEPER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("step 1: sleeping", flush=True)
time.sleep(600)
"""


def _training(ray, tmp_path: Path, *script: str):
    run_dir = tmp_path / "run"
    what = ["--", *script] if script else ["--steps", "100000", "--set", "training.log_interval=1"]
    proc = start("launch", "ddp", *ray_args(ray, tmp_path), *what, cwd=tmp_path, log=tmp_path / "launcher.out",
                 env=ray.env())
    text = lambda: (run_dir / "logs" / "rank0.log").read_text(errors="replace")  # noqa: E731
    training = lambda: proc.poll() is not None or ((run_dir / "logs" / "rank0.log").is_file() and "step " in text())  # noqa: E731
    assert wait_for(training, 240, 0.3) and proc.poll() is None, (tmp_path / "launcher.out").read_text()[-3000:]
    return proc, run_dir


def test_a_killed_rank_ends_the_job_with_its_report_and_leaves_nothing_on_either_host(ray, tmp_path):
    proc, run_dir = _training(ray, tmp_path)
    found = [(host, payload_pid(ray.fake, host, run_dir, rank=1)) for host in ray.fake.hosts]
    host, victim = next((h, pid) for h, pid in found if pid)
    struck = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    assert proc.wait(timeout=END_LIMIT_S) == 1
    assert wait_for(lambda: nothing_left(ray, run_dir), END_LIMIT_S - (time.monotonic() - struck))
    ended_s = time.monotonic() - struck
    out = (tmp_path / "launcher.out").read_text()
    assert f"rank 1 on {host.ip}: signal SIGKILL" in out, out[-3000:]
    outcome = json.loads((run_dir / "outcome.json").read_text())
    assert outcome["failure"]["rank"] == 1 and outcome["failure"]["host"] == host.ip
    print(f"ray: rank 1 killed on {host.name}: reported and nothing left after {ended_s:.2f} s")


# Another Ray job on the same cluster: a driver with one actor (no CPUs), printing the actor's pid.
BYSTANDER = """
import os, sys, time, ray
ray.init(address=sys.argv[1], _node_ip_address=sys.argv[2], logging_level="ERROR")
@ray.remote(num_cpus=0)
class Idle:
    def pid(self):
        return os.getpid()
idle = Idle.remote()
print(ray.get(idle.pid.remote()), flush=True)
time.sleep(600)
"""


def test_ctrl_c_cancels_exactly_this_job_on_the_cluster(ray, tmp_path):
    other = subprocess.Popen([sys.executable, "-c", BYSTANDER, ray.address, ray.fake.gateway], env=ray.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        actor = int(other.stdout.readline())
        (tmp_path / "sleeper.py").write_text(SLEEPER)
        proc, run_dir = _training(ray, tmp_path, str(tmp_path / "sleeper.py"))
        running = lambda: all(len(job_pids(ray.fake, host, run_dir)) >= 3 for host in ray.fake.hosts)  # noqa: E731
        assert wait_for(running, 30)  # on each host: the agent, the script, its child
        struck = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=END_LIMIT_S) == 130
        assert wait_for(lambda: nothing_left(ray, run_dir), END_LIMIT_S - (time.monotonic() - struck))
        print(f"ray: Ctrl-C: nothing left after {time.monotonic() - struck:.2f} s")
        assert other.poll() is None and Path(f"/proc/{actor}").exists()  # the other job and its actor live on
        assert ray.alive_nodes() == 3
    finally:
        other.kill()
        other.wait()


def test_doctor_checks_every_node_and_runs_a_script_across_them(ray, tmp_path):
    done = launchdeck("doctor", "--launcher", "ray", "--ray-address", ray.address, "--cpu", "--network-interface",
                      ray.fake.interface, "--json", cwd=tmp_path, env=ray.env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    hosts = {row["host"]: row for row in report["hosts"]}
    assert set(hosts) == {h.ip for h in ray.fake.hosts} | {ray.fake.gateway}
    assert all(hosts[h.ip]["facts"]["torch"] for h in ray.fake.hosts)  # versions read on each worker node
    assert report["allreduce"]["ok"] and "on 2 host(s)" in report["allreduce"]["detail"]


@pytest.mark.parametrize("args, expected", [
    (["--nproc", "3", "--cpu"], "room for 2 of the 3 workers"),
    (["--nproc", "2"], "room for 0 of the 2 workers the plan needs (1 CPU + 1 GPU each"),
])
def test_a_cluster_too_small_is_one_line_and_exit_2(ray, tmp_path, args, expected):
    began = time.monotonic()
    done = launchdeck("launch", "ddp", "--launcher", "ray", "--ray-address", ray.address, *args,
                      "--run-dir", str(tmp_path / "run"), cwd=tmp_path, env=ray.env())
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert time.monotonic() - began < BAD_INPUT_S and not (tmp_path / "run").exists()


def test_an_address_where_no_ray_cluster_answers_is_one_line_and_exit_2(ray, tmp_path):
    refused = f"{ray.fake.hosts[1].ip}:6390"  # a live host, nothing listening there
    for address, expected in ((refused, "cannot reach the Ray cluster"), ("no-such-host.invalid:6379", "cannot reach")):
        began = time.monotonic()
        done = launchdeck("launch", "ddp", "--cpu", "--launcher", "ray", "--ray-address", address,
                          "--run-dir", str(tmp_path / "run"), cwd=tmp_path, env=ray.env())
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
        assert time.monotonic() - began < BAD_INPUT_S
