"""Launch planning: what would run, decided without starting anything (and without torch)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys

import pytest

from launcher import entrypoints
from launcher.errors import LaunchdeckError
from launcher.node import probe
from launcher.plan import prepare as planning
from launcher.plan.prepare import prepare
from launcher.plan.request import LaunchRequest
from launcher.run import preflight
from launcher.spec import engines
from launcher.spec.engines import horovod


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch):
    monkeypatch.setattr(planning, "visible_gpus", lambda: 0)


def test_cpu_plan_runs_the_payload_through_torchrun(tmp_path):
    plan = prepare(LaunchRequest("zero3", steps=7, run_dir=str(tmp_path / "r"))).plan
    (node,) = plan.nodes
    assert plan.world_size == 2 and node.ranks == [0, 1]
    assert node.argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in node.argv and f"--master-port={plan.master_port}" in node.argv
    payload = node.argv[node.argv.index(entrypoints.PAYLOAD) - 1:]
    assert payload[:2] == ["-m", entrypoints.PAYLOAD]
    assert payload[payload.index("--steps") + 1] == "7" and "--cpu" in payload
    assert node.env["OMP_NUM_THREADS"] == "1" and node.env["DS_ACCELERATOR"] == "cpu"
    assert node.env["LAUNCHDECK_CONFIG"] == plan.config_path == str(tmp_path / "r" / "config.json")


def test_two_plans_get_different_free_ports(tmp_path):
    ports = {prepare(LaunchRequest("ddp", run_dir=str(tmp_path / str(i)))).plan.master_port for i in range(3)}
    assert len(ports) == 3 and 29500 not in ports


def test_user_script_gets_the_config_path(tmp_path):
    plan = prepare(LaunchRequest("zero2", run_dir=str(tmp_path), script=("train.py", "--epochs", "1"))).plan
    argv = plan.nodes[0].argv
    assert argv[-5:] == ["train.py", "--epochs", "1", "--deepspeed_config", plan.config_path]
    ddp = prepare(LaunchRequest("ddp", run_dir=str(tmp_path), script=("train.py",))).plan
    assert ddp.nodes[0].argv[-1] == "train.py" and ddp.nodes[0].env["LAUNCHDECK_ENGINE"] == "ddp"


def test_cpu_turns_gpu_only_features_off_with_a_notice(tmp_path):
    prepared = prepare(LaunchRequest("zeropp", overrides=("training.precision=fp16",), run_dir=str(tmp_path)))
    config = prepared.rendered.config
    assert "fp16" not in config and config["bf16"]["enabled"] is True
    assert config["zero_optimization"]["zero_quantized_weights"] is False
    assert config["zero_optimization"]["zero_hpz_partition_size"] == 2
    assert len(prepared.notices) == 3 and all(n.startswith("launchdeck: notice: ") for n in prepared.notices)


def test_cpu_uses_torch_adam_unless_offloading(tmp_path):
    plain = prepare(LaunchRequest("zero2", run_dir=str(tmp_path))).rendered.config
    offload = prepare(LaunchRequest("zero2-offload", run_dir=str(tmp_path))).rendered.config
    assert plain["optimizer"]["params"]["torch_adam"] is True
    assert "torch_adam" not in offload["optimizer"]["params"]  # offload needs DeepSpeed's CPUAdam


def test_gpus_decide_the_rank_count(monkeypatch, tmp_path):
    monkeypatch.setattr(planning, "visible_gpus", lambda: 4)
    prepared = prepare(LaunchRequest("zero1", run_dir=str(tmp_path)))
    assert prepared.plan.world_size == 4 and "--cpu" not in prepared.plan.nodes[0].argv
    assert "torch_adam" not in prepared.rendered.config["optimizer"]["params"]
    with pytest.raises(LaunchdeckError, match="--nproc 8 but only 4 GPU"):
        prepare(LaunchRequest("zero1", nproc=8, run_dir=str(tmp_path)))
    assert prepare(LaunchRequest("zero1", nproc=8, cpu=True, run_dir=str(tmp_path))).plan.world_size == 8


@pytest.mark.parametrize("visible, physical, expected", [(None, 2, 2), ("", 2, 0), ("0", 2, 1), ("0,1,2", 2, 2),
                                                         ("-1", 2, 0)])
def test_visible_gpus_honours_cuda_visible_devices(monkeypatch, tmp_path, visible, physical, expected):
    monkeypatch.undo()  # the real function, over a fake /proc tree
    fake = tmp_path / "gpus"
    fake.mkdir()
    for i in range(physical):
        (fake / f"0000:0{i}:00.0").mkdir()
    monkeypatch.setattr(probe, "Path", lambda p: fake if p == "/proc/driver/nvidia/gpus" else pathlib.Path(p))
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert probe.visible_gpus() == expected


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(LaunchdeckError, match="no complete checkpoint"):
        prepare(LaunchRequest("ddp", run_dir=str(tmp_path / "new"), resume=str(tmp_path)))
    with pytest.raises(LaunchdeckError, match="no run of 'ddp' with a checkpoint"):
        prepare(LaunchRequest("ddp", run_dir=str(tmp_path / "new"), resume="last", runs_root=str(tmp_path)))


def test_resume_last_picks_the_newest_run_with_a_checkpoint(tmp_path):
    for name in ("20260101-000000-ddp", "20260102-000000-ddp", "20260103-000000-ddp"):
        (tmp_path / name).mkdir()
    for name in ("20260101-000000-ddp", "20260102-000000-ddp"):
        (tmp_path / name / "checkpoints").mkdir()
        (tmp_path / name / "checkpoints" / "latest").write_text("step-000010\n")
    plan = prepare(LaunchRequest("ddp", run_dir=str(tmp_path / "x"), resume="last", runs_root=str(tmp_path))).plan
    argv = plan.nodes[0].argv
    assert argv[argv.index("--resume-from") + 1] == str(tmp_path / "20260102-000000-ddp")


def test_horovod_runs_locally_through_horovodrun(tmp_path, monkeypatch):
    plan = prepare(LaunchRequest("horovod", run_dir=str(tmp_path))).plan
    (command,) = plan.commands
    argv = command.argv
    hv = argv[next(i for i, a in enumerate(argv) if a.endswith("horovodrun")):]
    assert hv[1:4] == ["-np", "2", "--gloo"] and hv[hv.index("-H") + 1] == "localhost:2"
    assert "OMP_NUM_THREADS=1" in argv and plan.master_addr == "127.0.0.1"
    not_built = dataclasses.replace(horovod.SPEC, missing_here=lambda: "Horovod … `make horovod` builds it")
    monkeypatch.setitem(engines.REGISTRY, "horovod", not_built)
    with pytest.raises(LaunchdeckError, match="make horovod"):
        preflight.check_runnable(plan)
    monkeypatch.setitem(engines.REGISTRY, "horovod", dataclasses.replace(horovod.SPEC, missing_here=lambda: None))
    preflight.check_runnable(plan)  # local hosts only: runnable


def test_dry_run_starts_nothing_and_imports_no_torch(tmp_path):
    probe = ("import sys\nfrom launcher.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    assert e.code == 0, e.code\nassert 'torch' not in sys.modules and 'deepspeed' not in sys.modules")
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", probe, "launch", "zero3", "--cpu", "--dry-run", "--json",
                           "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["run_dir"] == str(run_dir) and plan["nodes"][0]["interpreter"] == sys.executable
    assert not run_dir.exists()
