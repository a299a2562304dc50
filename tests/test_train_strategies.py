"""Every launchable strategy trains the real payload on 2 CPU ranks (gloo), through `launchdeck launch`."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import yaml

from launcher import entrypoints
from launcher.spec.catalog import load_strategy, names

from .launching import launchdeck, result

pytestmark = pytest.mark.slow
LAUNCHABLE = [n for n in names() if load_strategy(n).engine != "horovod"]  # horovod: tests/test_horovod.py
STEPS = 12


@pytest.mark.parametrize("name", LAUNCHABLE)
def test_strategy_trains_on_two_cpu_ranks(name, tmp_path):
    run_dir = tmp_path / "run"
    done = launchdeck("launch", name, "--cpu", "--nproc", "2", "--steps", str(STEPS), "--run-dir", str(run_dir),
                      "--set", "training.log_interval=4", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = result(run_dir)
    assert (r["strategy"], r["world_size"], r["steps"]) == (name, 2, STEPS)
    losses = r["losses"]
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    assert statistics.mean(losses[-3:]) < statistics.mean(losses[:3]) - 0.3, losses
    split = load_strategy(name).pipeline or load_strategy(name).tensor_parallel  # ranks hold different parts
    if not split:
        assert r["params_identical"] is True and len(set(r["param_digests"])) == 1
    else:
        assert r["params_identical"] is None and len(set(r["param_digests"])) == 2  # two stages, two TP slices
    for key in ("tokens_per_s", "steps_per_s", "peak_mem_mb"):
        assert r[key] > 0


def test_run_record_holds_what_ran(tmp_path):
    run_dir = tmp_path / "rec"
    secret_env = {"LAUNCHDECK_TEST_TOKEN": "hunter2", "NCCL_DEBUG": "WARN"}
    done = launchdeck("launch", "ddp", "--cpu", "--steps", "3", "--micro-batch", "2", "--run-dir", str(run_dir),
                      cwd=tmp_path, env=secret_env)
    assert done.returncode == 0, done.stderr[-3000:]
    files = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert {"strategy.yaml", "config.json", "plan.json", "env.json", "versions.json", "result.json", "outcome.json",
            "logs/rank0.log", "logs/rank1.log", "logs/rank0.err.log", "logs/launcher.log"} <= files
    assert yaml.safe_load((run_dir / "strategy.yaml").read_text())["training"]["micro_batch"] == 2
    config = json.loads((run_dir / "config.json").read_text())
    assert config["training"]["micro_batch"] == 2 and config["training"]["steps"] == 3
    plan = json.loads((run_dir / "plan.json").read_text())
    assert entrypoints.PAYLOAD in plan["nodes"][0]["argv"] and plan["world_size"] == 2
    env = json.loads((run_dir / "env.json").read_text())
    assert env["LAUNCHDECK_TEST_TOKEN"] == "<redacted>" and "hunter2" not in (run_dir / "env.json").read_text()
    assert env["NCCL_DEBUG"] == "WARN" and env["OMP_NUM_THREADS"] == "1"
    versions = json.loads((run_dir / "versions.json").read_text())
    assert versions["torch"].startswith("2.") and versions["deepspeed"] and versions["python"]
    assert "step" in (run_dir / "logs" / "rank0.log").read_text()
    assert json.loads((run_dir / "outcome.json").read_text())["returncode"] == 0
    assert result(run_dir)["losses"] and (run_dir / "checkpoints" / "latest").is_file()


def test_user_script_gets_config_and_rank_env(tmp_path):
    script = tmp_path / "show.py"
    script.write_text(
        "import json, os, sys\n"
        "cfg = sys.argv[sys.argv.index('--deepspeed_config') + 1]\n"
        "assert cfg == os.environ['LAUNCHDECK_CONFIG']\n"
        "out = {'rank': os.environ['RANK'], 'world': os.environ['WORLD_SIZE'], 'batch': json.load(open(cfg))"
        "['train_batch_size'], 'args': sys.argv[1:3]}\n"
        "path = os.path.join(os.environ['LAUNCHDECK_RUN_DIR'], 'rank' + out['rank'] + '.json')\n"
        "open(path, 'w').write(json.dumps(out))\n")
    run_dir = tmp_path / "run"
    done = launchdeck("launch", "zero2", "--cpu", "--nproc", "3", "--run-dir", str(run_dir), "--",
                      str(script), "--epochs", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = [json.loads((run_dir / f"rank{r}.json").read_text()) for r in range(3)]
    assert {s["rank"] for s in seen} == {"0", "1", "2"}
    assert all(s["world"] == "3" and s["batch"] == 12 and s["args"] == ["--epochs", "1"] for s in seen)


def test_zero3_parameter_offload_without_optimizer_offload_exits_cleanly(tmp_path):
    """The combination that aborted at exit in DESIGN.md's measurements (rc 250): it must train and exit 0."""
    run_dir = tmp_path / "run"
    done = launchdeck("launch", "zero3", "--cpu", "--steps", "6", "--set", "zero.offload_param.device=cpu",
                      "--run-dir", str(run_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "terminate called" not in (run_dir / "logs" / "rank0.err.log").read_text()
    config = json.loads((run_dir / "config.json").read_text())["zero_optimization"]
    assert config["offload_param"]["device"] == "cpu" and "offload_optimizer" not in config
    assert result(run_dir)["params_identical"] is True
