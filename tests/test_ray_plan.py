"""--launcher ray without a cluster: the plan and its job file, the refusals, where the watch puts a rank Ray
placed, how many workers a node has room for, and the output channel from a worker to the driver."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from launcher import entrypoints
from launcher.errors import LaunchdeckError
from launcher.node import events
from launcher.plan.model import PLACED_BY_CLUSTER
from launcher.plan.prepare import prepare
from launcher.plan.request import LaunchRequest
from launcher.raycluster import check, driver, worker
from launcher.raycluster.job import FILE, RayJob
from launcher.run.watch import Watch

from .launching import wait_for


def ray_request(tmp_path: Path, strategy: str = "ddp", **fields) -> LaunchRequest:
    fields = {"cpu": True, "ray_address": "10.1.2.3:6379", **fields}
    return LaunchRequest(strategy, launcher="ray", run_dir=str(tmp_path / "run"), **fields)


@pytest.mark.parametrize("strategy, runner", [("ddp", "torch"), ("zero3", "torch"), ("fsdp2", "torch"),
                                              ("horovod", "horovod")])
def test_the_plan_runs_the_driver_here_and_hands_it_the_job(tmp_path, strategy, runner):
    plan = prepare(ray_request(tmp_path, strategy, nproc=3, network_interface="eth1")).plan
    job_path = str(tmp_path / "run" / FILE)
    (command,) = plan.commands
    assert command.argv == [sys.executable, "-m", entrypoints.RAY_DRIVER, job_path] and command.stop == "signal"
    assert plan.cluster_check == [sys.executable, "-m", entrypoints.RAY_CHECK, job_path]
    job = RayJob(**json.loads(plan.files[job_path]))
    assert (job.address, job.world_size, job.runner, job.cpus_per_worker, job.gpus_per_worker) == \
        ("10.1.2.3:6379", 3, runner, 1.0, 0.0)
    assert job.agent[1:3] == ["-m", entrypoints.AGENT] and "--per-rank" in job.agent and "--" not in job.agent
    assert job.command[job.command.index("-m") + 1] == entrypoints.PAYLOAD
    assert job.env["LAUNCHDECK_CONFIG"] == plan.config_path and job.env["GLOO_SOCKET_IFNAME"] == "eth1"
    assert set(plan.agents) == {"rank0", "rank1", "rank2"} and set(plan.agents.values()) == {PLACED_BY_CLUSTER}
    assert plan.master_port == 0 and "rendezvous chosen by rank 0 at the start" in plan.describe()


def test_horovod_settings_reach_the_ray_workers_as_env(tmp_path):
    plan = prepare(ray_request(tmp_path, "horovod", overrides=("horovod.fusion_threshold_mb=7",))).plan
    job = RayJob(**json.loads(next(iter(plan.files.values()))))
    assert job.env["HOROVOD_FUSION_THRESHOLD"] == str(7 * 2**20)


def test_gpu_workers_ask_ray_for_a_gpu_each(tmp_path):
    plan = prepare(ray_request(tmp_path, cpu=False, nproc=4)).plan
    job = RayJob(**json.loads(next(iter(plan.files.values()))))
    assert (job.world_size, job.gpus_per_worker) == (4, 1.0)


@pytest.mark.parametrize("fields, message", [
    ({"hostfile": "hosts"}, "Ray places the workers on its own nodes"),
    ({"master_addr": "10.0.0.1"}, "rank 0's worker picks the rendezvous"),
])
def test_what_ray_decides_is_refused_in_one_line(tmp_path, fields, message):
    with pytest.raises(LaunchdeckError, match=message):
        prepare(ray_request(tmp_path, **fields))


@pytest.mark.parametrize("address", ["head", "head:", "head:0", "head:70000", "ray://head:10001", "h$(reboot):6379",
                                     ":6379"])
def test_a_ray_address_that_is_not_auto_or_host_port_is_refused(tmp_path, address):
    with pytest.raises(LaunchdeckError, match="--ray-address"):
        prepare(ray_request(tmp_path, ray_address=address))


def test_a_ray_address_without_the_ray_launcher_is_refused(tmp_path):
    with pytest.raises(LaunchdeckError, match="--ray-address names the Ray cluster of --launcher ray"):
        prepare(LaunchRequest("ddp", ray_address="h:6379", cpu=True, run_dir=str(tmp_path / "run")))


def test_the_watch_names_the_host_where_ray_placed_each_rank(tmp_path):
    plan = prepare(ray_request(tmp_path)).plan
    watch = Watch(plan)
    watch.on_event({"kind": "start", "id": "rank0", "pid": 11, "host": "10.0.0.7"}, now=1.0)
    watch.on_event({"kind": "start", "id": "rank1", "pid": 12, "host": "10.0.0.8"}, now=1.0)
    watch.on_event({"kind": "exit", "id": "rank1", "rank": 1, "code": 3, "failures": [], "t": 5.0}, now=2.0)
    first = watch.first(tmp_path)
    assert (first.host, first.rank, first.exit_code) == ("10.0.0.8", 1, 3)
    assert watch.unfinished() == {"10.0.0.7": [11]}


def test_a_start_never_moves_a_rank_the_plan_placed(tmp_path):
    plan = prepare(LaunchRequest("ddp", cpu=True, launcher="local", run_dir=str(tmp_path / "run"))).plan
    watch = Watch(plan)
    before = dict(watch.hosts)
    for agent in before:
        watch.on_event({"kind": "start", "id": agent, "pid": 1, "host": "elsewhere"}, now=1.0)
    assert watch.hosts == before


def job(world: int = 4, cpus: float = 1.0, gpus: float = 0.0) -> RayJob:
    return RayJob("h:1", world, "torch", cpus, gpus, ["a"], ["c"], "/", "/run")


@pytest.mark.parametrize("node, workers, expected", [
    ({"cpu": 8.0, "gpu": 0.0}, job(), 8),
    ({"cpu": 8.0, "gpu": 2.0}, job(gpus=1.0), 2),  # GPUs bound it
    ({"cpu": 1.0, "gpu": 4.0}, job(cpus=2.0, gpus=1.0), 0),  # one worker needs 2 CPUs
    ({"cpu": 0.0, "gpu": 0.0}, job(), 0),  # a login node joined with --num-cpus 0
])
def test_room_counts_whole_workers_per_node(node, workers, expected):
    assert check.room(node, workers) == expected


def test_a_cluster_without_room_for_every_worker_is_refused_with_its_nodes():
    nodes = [{"ip": "10.0.0.1", "cpu": 1.0, "gpu": 0.0}, {"ip": "10.0.0.2", "cpu": 1.5, "gpu": 0.0}]
    check.check_room(nodes, job(world=2))  # one on each
    with pytest.raises(check.Problem, match=r"room for 2 of the 3 workers .*10\.0\.0\.2 1\.5 CPU/0 GPU"):
        check.check_room(nodes, job(world=3))


def test_an_unreachable_head_is_refused_before_ray_is_imported():
    with pytest.raises(check.Problem, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        check.reach("127.0.0.1:1")


def test_the_workers_output_reaches_the_driver_and_a_stranger_is_not_heard(capfd):
    relay = driver.Relay("127.0.0.1", workers=2)
    with socket.create_connection(relay.address) as stranger:  # no token: a forged event must not get through
        stranger.sendall(b"guess\n" + events.encode(events.tag_for("/r"), "exit", id="rank0", rank=0, code=0,
                                                     failures=[], t=1.0).encode())
    exit_event = events.encode(events.tag_for("/r"), "exit", id="rank0", rank=0, code=5, failures=[], t=1.0)
    code = (f"import sys; print('one', flush=True); print('two', file=sys.stderr, flush=True); "
            f"sys.stdout.write({exit_event!r})")
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(worker.relay(
        [sys.executable, "-c", code], {"LAUNCHDECK_RUN_DIR": "/r"}, "/", relay.address, relay.token)))
        for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    relay.drain()
    assert codes == [5, 5]  # the code the agent reported, not setsid's
    out = capfd.readouterr().out.splitlines()
    assert sorted(line for line in out if events.MARKER not in line) == ["one", "one", "two", "two"]
    assert sum(events.MARKER in line for line in out) == 2 and "guess" not in "".join(out)


def test_without_its_agents_report_a_worker_takes_the_agents_exit_code():
    relay = driver.Relay("127.0.0.1", workers=2)
    assert worker.relay(["sh", "-c", "exit 3"], {}, "/", relay.address, relay.token) == 3
    assert worker.relay(["true"], {}, "/", relay.address, relay.token) == 0


def test_a_rank_whose_driver_is_gone_is_torn_down(tmp_path):
    """A Ray worker killed (the job cancelled) leaves its agent's output unread: the agent's next heartbeat fails
    and it stops its rank, as when an ssh connection drops."""
    pid_file = tmp_path / "rank.pid"
    rank = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    agent = [sys.executable, "-m", entrypoints.AGENT, "--per-rank", "--rank-logs", str(tmp_path), "--beat", "0.2",
             "--", sys.executable, "-c", rank]
    proc = subprocess.Popen(agent, env={**os.environ, "RANK": "0"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert events.MARKER in proc.stdout.readline().decode()  # the agent is up
    assert wait_for(pid_file.is_file, 15) and pid_file.read_text()
    proc.stdout.close()  # what worker.relay does when its worker dies: nothing reads the agent any more
    proc.wait(timeout=15)
    assert wait_for(lambda: not Path(f"/proc/{pid_file.read_text()}").exists(), 10), "the rank outlived its agent"
