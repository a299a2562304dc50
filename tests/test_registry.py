"""The engine registry: a new engine is one entry plus a renderer, and the rest of launchdeck follows."""

from __future__ import annotations

import json

import pytest

from launcher.cli import main
from launcher.errors import LaunchdeckError
from launcher.plan.prepare import prepare
from launcher.plan.request import LaunchRequest
from launcher.render import Cluster, RenderedConfig, check, render
from launcher.render.batch import solve
from launcher.render.common import training_block
from launcher.spec import engines
from launcher.spec.catalog import load_strategy
from launcher.spec.engines import EngineSpec


def toy_render(strategy, cluster: Cluster, *, hf: bool = False) -> RenderedConfig:
    """The toy engine's renderer: the engine-neutral training block, batch solved for the world."""
    batch = solve(strategy.training, cluster.world_size)
    config = {"engine": strategy.engine, "training": training_block(strategy, batch, cluster.world_size)}
    return RenderedConfig(strategy, cluster, config, batch.data_parallel)


TOY = EngineSpec(name="toy", description="a toy engine for the registry's tests", renderer=f"{__name__}:toy_render",
                 config_flag="--toy-config")


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """The toy engine registered for one test, and a strategy file that uses it."""
    monkeypatch.setitem(engines.REGISTRY, "toy", TOY)
    path = tmp_path / "toy.yaml"
    path.write_text("description: trains with the toy engine\nengine: toy\n"
                    "training: {micro_batch: 2, global_batch: 16}\n")
    return path


def test_the_builtin_entries_say_what_their_strategies_own():
    assert engines.names() == ["ddp", "deepspeed", "fsdp2", "horovod"]
    assert engines.get("deepspeed").sections == {"zero", "pipeline", "tensor_parallel", "deepspeed"}
    assert engines.get("fsdp2").sections == {"fsdp"}
    assert all(engines.get(name).name == name for name in engines.names())
    with pytest.raises(LaunchdeckError, match="unknown engine 'megatron' \\(known: ddp, deepspeed, fsdp2, horovod\\)"):
        engines.get("megatron")


def test_a_toy_engine_renders_with_nothing_but_its_entry(toy):
    strategy = load_strategy(str(toy))
    rendered = render(strategy, Cluster(4, 2, "cpu"))
    assert rendered.engine == "toy" and rendered.config["engine"] == "toy"
    training = rendered.config["training"]
    assert (training["micro_batch"], training["grad_accum"], training["global_batch"]) == (2, 2, 16)
    check(rendered)  # no parser of its own: nothing to check, nothing imported
    with pytest.raises(LaunchdeckError, match="--hf renders DeepSpeed configs"):
        render(strategy, Cluster(4), hf=True)


def test_a_toy_engine_plans_a_script_locally_and_across_hosts(toy, tmp_path):
    plan = prepare(LaunchRequest(str(toy), cpu=True, script=("train.py", "--epochs", "1"),
                                 run_dir=str(tmp_path / "local"))).plan
    (node,) = plan.nodes
    assert (plan.engine, plan.transport, plan.world_size) == ("toy", "local", 2)
    assert node.argv[-5:] == ["train.py", "--epochs", "1", "--toy-config", plan.config_path]
    assert node.env["LAUNCHDECK_ENGINE"] == "toy"
    hostfile = tmp_path / "hosts"
    hostfile.write_text("node-a slots=2\nnode-b slots=2\n")
    plan = prepare(LaunchRequest(str(toy), cpu=True, script=("train.py",), hostfile=str(hostfile),
                                 run_dir=str(tmp_path / "ssh"))).plan
    assert (plan.transport, plan.world_size, [n.ranks for n in plan.nodes]) == ("ssh", 4, [[0, 1], [2, 3]])
    assert [c.name for c in plan.commands] == ["ssh node-a", "ssh node-b"]


def test_a_toy_engine_without_a_payload_asks_for_a_script(toy, tmp_path):
    with pytest.raises(LaunchdeckError, match="engine toy has no payload here; run your own script"):
        prepare(LaunchRequest(str(toy), cpu=True, run_dir=str(tmp_path / "r")))


def test_the_cli_renders_a_toy_strategy_and_refuses_sections_it_does_not_own(toy, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["render", str(toy), "-n", "8"])
    assert done.value.code == 0
    assert json.loads(capsys.readouterr().out)["training"]["world_size"] == 8
    foreign = tmp_path / "foreign.yaml"
    foreign.write_text("description: x\nengine: toy\nzero: {stage: 2}\n")
    with pytest.raises(SystemExit) as done:
        main(["show", str(foreign)])
    assert done.value.code == 2
    assert "zero: section not used by engine 'toy'" in capsys.readouterr().err
