"""The CLI end to end: commands, output, precedence, help, and what it does not import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from launcher import __version__
from launcher.cli import COMMANDS
from launcher.spec.catalog import names


def test_strategies_lists_the_catalog(cli):
    result = cli("strategies")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == names()
    assert any(line.split()[:2] == ["zero3", "deepspeed"] for line in lines)


def test_strategies_json(cli):
    rows = json.loads(cli("strategies", "--json").stdout)
    assert {r["name"]: r["engine"] for r in rows}["horovod"] == "horovod"
    assert all(r["description"] for r in rows)


def test_show_prints_the_resolved_strategy(cli):
    shown = yaml.safe_load(cli("show", "zero3-offload", "--micro-batch", "2").stdout)
    assert shown["zero"]["stage"] == 3 and shown["zero"]["offload_param"]["device"] == "cpu"
    assert shown["training"]["micro_batch"] == 2 and "extends" not in shown


def test_render_to_stdout_and_file(cli, tmp_path):
    out = tmp_path / "ds.json"
    first = json.loads(cli("render", "zero2", "--world-size", "4").stdout)
    assert cli("render", "zero2", "-n", "4", "-o", str(out)).stdout == ""
    assert json.loads(out.read_text()) == first and first["train_batch_size"] == 16


def test_precedence_cli_over_env_over_yaml(cli):
    def batch(*args, env=None):
        return json.loads(cli("render", "zero1", "-n", "2", *args, env=env).stdout)["train_micro_batch_size_per_gpu"]

    assert batch() == 4                                                          # YAML
    assert batch(env={"LAUNCHDECK_MICRO_BATCH": "3"}) == 3                       # env over YAML
    assert batch("--micro-batch", "5", env={"LAUNCHDECK_MICRO_BATCH": "3"}) == 5  # CLI over env
    assert batch("--set", "training.micro_batch=7", "--micro-batch", "5") == 5   # dedicated flag applies last


def test_world_size_from_env(cli):
    config = json.loads(cli("render", "zero1", env={"LAUNCHDECK_WORLD_SIZE": "16"}).stdout)
    assert config["train_batch_size"] == 64


def test_grad_accum_flag_replaces_a_global_batch(cli, write_yaml):
    path = write_yaml("s.yaml", "description: s\nextends: zero1\ntraining: {global_batch: 64}\n")
    config = json.loads(cli("render", path, "-n", "2", "--grad-accum", "3").stdout)
    assert (config["gradient_accumulation_steps"], config["train_batch_size"]) == (3, 24)


@pytest.mark.slow
def test_render_check_runs_deepspeeds_parser(cli):
    result = cli("render", "zeropp", "-n", "64", "--gpus-per-node", "8", "--check")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["zero_optimization"]["zero_hpz_partition_size"] == 8


def test_version(cli):
    assert cli("--version").stdout.strip().endswith(__version__)


@pytest.mark.parametrize("command", [[]] + [[name] for name in COMMANDS])
def test_every_command_has_help_with_an_example(cli, command):
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and "launchdeck" in result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["render", "zero3", "--world-size", "8"], ["strategies"],
                                  ["show", "zeropp"], ["render", "horovod", "-n", "8"],
                                  ["estimate", "--all", "--model", "1b", "-n", "64", "--gpu-memory", "80GiB"],
                                  ["launch", "zero2", "--launcher", "ray", "--ray-address", "10.0.0.1:6379", "--nproc",
                                   "8", "--dry-run", "--run-dir", "/nonexistent/run"]])
def test_fast_paths_import_no_torch(argv):
    probe = ("import sys; from launcher.cli import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
             "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'deepspeed', 'transformers', "
             "'numpy', 'pydantic', 'ray', 'horovod'})\nassert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_hostfile_check_since_a_run_says_which_hosts_rejoin_and_which_are_gone(cli, tmp_path):
    """What a --min-nodes restart would see: the run's last plan against the hostfile as it is now."""
    (tmp_path / "before").write_text("node-a slots=2\nnode-b slots=2\nnode-c slots=2\n")
    plan = cli("launch", "ddp", "--cpu", "--hostfile", str(tmp_path / "before"), "--run-dir", str(tmp_path / "run"),
               "--dry-run", "--json")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "plan.json").write_text(plan.stdout)
    (tmp_path / "now").write_text("node-a slots=2\nnode-c slots=1\nnode-d slots=2\n")
    done = cli("hostfile", "check", str(tmp_path / "now"), "--since", str(tmp_path / "run"), "--json")
    assert json.loads(done.stdout)["since"] == {"added": ["node-d"], "gone": ["node-b"], "resized": {"node-c": [2, 1]}}
    text = cli("hostfile", "check", str(tmp_path / "now"), "--since", str(tmp_path / "run")).stdout
    assert text.endswith("added node-d; gone node-b; slots changed node-c 2→1\n")
