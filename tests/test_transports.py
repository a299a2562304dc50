"""Multi-host plans for every transport: exact commands, env, ranks; hostile input quoted or refused."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from launcher import entrypoints
from launcher.errors import LaunchdeckError
from launcher.plan.prepare import prepare
from launcher.plan.request import LaunchRequest
from launcher.plan.transports import LAUNCHERS, PLANNERS
from launcher.run import preflight

HOSTILE_VALUES = ["$(touch {p})", "`touch {p}`", "a'b;touch {p}", 'a"b$(touch {p})"', "x\ntouch {p}",
                  "; touch {p}", "| touch {p}", "&& touch {p}", "%n %h", "${{IFS}}touch${{IFS}}{p}"]


@pytest.fixture
def hostfile(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("node-a slots=4\nnode-b slots=4\n")
    return str(path)


def plan_for(tmp_path, hostfile, transport, **kw):
    request = LaunchRequest("zero3", hostfile=hostfile, launcher=transport, run_dir=str(tmp_path / "run"), **kw)
    return prepare(request).plan


@pytest.mark.parametrize("transport", ["ssh", "pdsh", "torchrun"])
def test_torchrun_per_node_transports(tmp_path, hostfile, transport):
    plan = plan_for(tmp_path, hostfile, transport, ssh_port=2222)
    assert (plan.world_size, plan.master_addr) == (8, "node-a")
    assert 20000 <= plan.master_port < 30000  # remote master: drawn below the ephemeral range
    for rank, node in enumerate(plan.nodes):
        torchrun = node.argv.index("torch.distributed.run") - 2
        assert node.argv[torchrun:torchrun + 3] == [sys.executable, "-m", "torch.distributed.run"]
        agent = node.argv[:torchrun]  # the node's watchdog (none where launchdeck starts nothing)
        assert agent == ([] if transport == "torchrun" else
                         [sys.executable, "-m", entrypoints.AGENT, f"--node={rank}", f"--host={node.host}",
                          *(["--stdin-stop"] if transport == "ssh" else []), "--hang-timeout=5",
                          "--heartbeat-timeout=10",
                          "--"])
        assert f"--node-rank={rank}" in node.argv and "--nnodes=2" in node.argv
        assert "--nproc-per-node=4" in node.argv and "--master-addr=node-a" in node.argv
        assert node.ranks == list(range(4 * rank, 4 * rank + 4)) and node.interpreter == sys.executable
    if transport == "ssh":
        assert [c.argv[c.argv.index("-p") + 1] for c in plan.commands] == ["2222", "2222"]
        assert [c.argv[-2] for c in plan.commands] == ["node-a", "node-b"]
        assert [(c.stop, c.agents) for c in plan.commands] == [("stdin", ["node0"]), ("stdin", ["node1"])]
    elif transport == "pdsh":
        (command,) = (c.argv for c in plan.commands)
        assert command[command.index("-w") + 1] == "node-a,node-b" and "--node-rank=%n" in command[-1]
        assert "--node=%n --host=%h" in command[-1]  # pdsh fills in each host's index and name
    else:
        assert plan.commands == []


def test_openmpi_plan(tmp_path, hostfile):
    plan = plan_for(tmp_path, hostfile, "openmpi", network_interface="ib0", env=("FOO=bar",))
    (argv,) = (c.argv for c in plan.commands)
    assert argv[:3] == ["mpirun", "-np", "8"]
    assert argv[argv.index("--hostfile") + 1] in plan.files
    assert plan.files[argv[argv.index("--hostfile") + 1]] == "node-a slots=4\nnode-b slots=4\n"
    assert ["--mca", "btl_tcp_if_include", "ib0"] == argv[argv.index("btl_tcp_if_include") - 1:][:3]
    assert "FOO=bar" in argv and "MASTER_ADDR=node-a" in argv and f"MASTER_PORT={plan.master_port}" in argv


def test_horovodrun_plan_uses_rendered_flags(tmp_path, hostfile):
    request = LaunchRequest("horovod", hostfile=hostfile, launcher="horovodrun", run_dir=str(tmp_path / "r"),
                            network_interface="eth1", ssh_port=22)
    (argv,) = (c.argv for c in prepare(request).plan.commands)
    hv = argv[next(i for i, a in enumerate(argv) if a.endswith("horovodrun")):]
    assert hv[1:4] == ["-np", "8", "--gloo"] and "--fusion-threshold-mb" in hv
    assert hv[hv.index("-H") + 1] == "node-a:4,node-b:4" and hv[hv.index("--network-interfaces") + 1] == "eth1"


def test_slurm_plan_from_the_allocation(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[1-2]")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "4(x2)")
    monkeypatch.setenv("SLURM_NTASKS", "8")  # the allocation's; the step must not inherit it
    monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", "64,48")  # uneven nodes: each task gets what the smallest has
    plan = prepare(LaunchRequest("zero3", launcher="slurm", run_dir=str(tmp_path / "r"))).plan
    (argv,) = (c.argv for c in plan.commands)
    assert argv[:6] == ["srun", "--kill-on-bad-exit=1", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                        "--cpus-per-task=48"]
    assert '--node="$SLURM_NODEID"' in argv[-1] and '--node-rank="$SLURM_NODEID"' in argv[-1]  # node's shell expands
    assert argv[-3:-1] == ["sh", "-c"] and '--node-rank="$SLURM_NODEID"' in argv[-1]
    assert plan.world_size == 8 and plan.master_addr == "gpu1"
    with pytest.raises(LaunchdeckError, match="takes its hosts from the allocation"):
        prepare(LaunchRequest("zero3", launcher="slurm", hostfile="x", run_dir=str(tmp_path)))


def test_filters_pick_hosts_and_gpus(tmp_path, hostfile):
    plan = plan_for(tmp_path, hostfile, "ssh", exclude="node-a:0,1")
    assert plan.world_size == 6 and plan.master_addr == "node-a"
    assert plan.nodes[0].env["CUDA_VISIBLE_DEVICES"] == "2,3" and "CUDA_VISIBLE_DEVICES" not in plan.nodes[1].env
    only_b = plan_for(tmp_path, hostfile, "ssh", include="node-b")
    assert [n.host for n in only_b.nodes] == ["node-b"] and only_b.master_addr == "node-b"


@pytest.mark.parametrize("request_kw, message", [
    ({"launcher": "ssh"}, "needs --hostfile"),
    ({"hostfile": "/no/such/hosts"}, "hostfile not found"),
    ({"include": "a"}, "filter a --hostfile"),
    ({"env": ("1BAD=x",)}, "expected NAME=VALUE"),
    ({"env": ("A;B=x",)}, "expected NAME=VALUE"),
    ({"env": ("NOVALUE",)}, "expected NAME=VALUE"),
    ({"master_addr": "-oProxyCommand=x", "hostfile": "HOSTS"}, "invalid host name"),
    ({"launcher": "pdsh", "hostfile": "HOSTS", "env": ("X=%h",)}, "pdsh rewrites"),
])
def test_bad_cluster_requests(tmp_path, hostfile, request_kw, message):
    if request_kw.get("hostfile") == "HOSTS":
        request_kw["hostfile"] = hostfile
    with pytest.raises(LaunchdeckError, match=message):
        prepare(LaunchRequest("zero3", run_dir=str(tmp_path / "r"), **request_kw))


def test_every_launcher_choice_has_a_planner():
    assert set(LAUNCHERS) == set(PLANNERS) >= {"local", "ssh", "pdsh", "openmpi", "slurm", "horovodrun", "torchrun"}


def test_a_launcher_missing_here_is_one_clear_error(tmp_path, hostfile, monkeypatch):
    plan = plan_for(tmp_path, hostfile, "pdsh")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LaunchdeckError, match="--launcher pdsh needs 'pdsh', which is not installed here"):
        preflight.check_runnable(plan)


def test_per_node_torchrun_with_restarts_is_elastic_as_torchrun_itself_reads_it(tmp_path, hostfile):
    """--max-restarts on the per-node plan (Kubernetes, a scheduler): c10d, --nnodes MIN:MAX, torchrun's own
    restarts, and a payload that resumes from the run's checkpoint by itself. Read back by torchrun's parser."""
    from torch.distributed.run import config_from_args, get_args_parser

    plan = plan_for(tmp_path, hostfile, "torchrun", max_restarts=3, min_nodes=1, save_every=5)
    for node in plan.nodes:
        args = get_args_parser().parse_args(node.argv[node.argv.index("torch.distributed.run") + 1:])
        config, _, script_args = config_from_args(args)
        assert (config.min_nodes, config.max_nodes, config.max_restarts) == (1, 2, 3)
        assert config.rdzv_backend == "c10d" and config.rdzv_endpoint == f"node-a:{plan.master_port}"
        assert config.run_id == "run" and "--auto-resume" in script_args
        assert not any(arg.startswith("--node-rank") for arg in node.argv)  # c10d assigns node ranks
    static = plan_for(tmp_path, hostfile, "ssh", max_restarts=3, save_every=5)  # launchdeck owns the restarts
    assert all("--max-restarts=0" in node.argv and "--nnodes=2" in node.argv for node in static.nodes)


def test_per_node_torchrun_lines_are_printed_not_run(tmp_path, hostfile):
    preflight.check_runnable(plan_for(tmp_path, hostfile, "ssh"))
    with pytest.raises(LaunchdeckError, match="only prints the line each node runs; add --dry-run"):
        preflight.check_runnable(plan_for(tmp_path, hostfile, "torchrun"))


@pytest.mark.parametrize("transport", ["ssh", "pdsh", "slurm"])
def test_hostile_env_values_reach_the_rank_verbatim_through_a_real_shell(tmp_path, hostfile, transport,
                                                                          monkeypatch):
    """Run each generated remote line in sh, with the interpreter swapped for a probe that dumps its env."""
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node-a,node-b")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "4(x2)")
    pwned = tmp_path / "PWNED"
    values = [v.format(p=pwned) for v in HOSTILE_VALUES if not (transport == "pdsh" and "%" in v)]
    env = tuple(f"HOSTILE_{i}={v}" for i, v in enumerate(values))
    kw = {"hostfile": None} if transport == "slurm" else {"hostfile": hostfile}
    plan = prepare(LaunchRequest("zero3", launcher=transport, run_dir=str(tmp_path / "r"), env=env, **kw)).plan
    line = plan.commands[0].argv[-1]
    line = line.replace("%n", "0") if transport == "pdsh" else line  # what pdsh itself substitutes
    probe = f"{sys.executable} -c 'import json,os,sys; print(json.dumps(dict(os.environ)))'"
    line = line.replace(shlex.quote(sys.executable) + " -m torch.distributed.run", probe, 1)
    line = line.replace(sys.executable + " -m torch.distributed.run", probe, 1)
    control, keep_open = os.pipe()  # the ssh agent's control channel: open while the node runs
    try:
        done = subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=30, stdin=control,
                              env={"PATH": os.environ["PATH"], "SLURM_NODEID": "0"}, cwd=tmp_path)
    finally:
        os.close(control), os.close(keep_open)
    assert done.returncode == 0, done.stderr
    seen = json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith("{")))  # amid agent events
    assert [seen[f"HOSTILE_{i}"] for i in range(len(values))] == values
    assert not pwned.exists()


def test_ten_thousand_hosts_plan_without_torch(tmp_path):
    """Planning scale, measured for real by benchmarks/plan_scale.py; here: it works and stays torch-free."""
    path = tmp_path / "big"
    path.write_text("".join(f"node{i:05d} slots=8\n" for i in range(10_000)))
    probe = ("import sys\nfrom launcher.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    assert e.code == 0, e.code\nassert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", probe, "launch", "zero3", "--hostfile", str(path), "--launcher",
                           "torchrun", "--dry-run", "--json", "--run-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["world_size"] == 80_000 and len(plan["nodes"]) == 10_000
    assert "--node-rank=9999" in plan["nodes"][-1]["argv"]
