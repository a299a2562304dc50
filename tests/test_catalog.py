"""Catalog loading: names, extends, user files, overrides and their precedence."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from launcher.errors import StrategyError
from launcher.spec import catalog
from launcher.spec.catalog import load_strategy, names, to_yaml

EXPECTED = {"ddp", "zero1", "zero2", "zero3", "zero2-offload", "zero3-offload", "zeropp", "pipeline", "horovod"}


def test_catalog_has_the_promised_strategies():
    assert EXPECTED <= set(catalog.names())


@pytest.mark.parametrize("name", catalog.names())
def test_every_strategy_loads_with_its_own_description(name):
    strategy = catalog.load_strategy(name)
    own = yaml.safe_load((catalog.catalog_dir() / f"{name}.yaml").read_text())
    assert strategy.name == name
    assert own.get("description") == strategy.description  # never inherited from a parent


def test_extends_merges_sections_child_wins():
    zero3 = catalog.load_strategy("zero3")
    assert zero3.zero.stage == 3
    assert zero3.zero.stage3_gather_16bit_weights_on_model_save is True
    assert zero3.training == catalog.load_strategy("zero1").training  # inherited through zero2
    offload = catalog.load_strategy("zero3-offload")
    assert offload.zero.offload_param.device == "cpu" and offload.zero.stage == 3


def test_user_file_extends_catalog_strategy(write_yaml):
    path = write_yaml("team/big.yaml", """
        description: our 70B recipe
        extends: zero3
        training: {micro_batch: 1, global_batch: 1024}
        zero: {stage3_max_live_parameters: 3e8}
    """)
    s = catalog.load_strategy(path)
    assert (s.name, s.zero.stage, s.zero.stage3_max_live_parameters) == ("big", 3, 300_000_000)
    assert (s.training.micro_batch, s.training.global_batch, s.training.precision) == (1, 1024, "bf16")


def test_user_file_extends_a_file_relative_to_itself(write_yaml):
    write_yaml("team/base.yaml", "description: base\nextends: zero2\ntraining: {micro_batch: 8}\n")
    path = write_yaml("team/child.yaml", "description: child\nextends: ./base.yaml\nzero: {stage: 1}\n")
    s = catalog.load_strategy(path)
    assert (s.training.micro_batch, s.zero.stage) == (8, 1)


def test_extends_cycle_is_an_error(write_yaml):
    write_yaml("a.yaml", "description: a\nextends: ./b.yaml\n")
    path = write_yaml("b.yaml", "description: b\nextends: ./a.yaml\n")
    with pytest.raises(StrategyError, match="extends cycle: b -> a -> b"):
        catalog.load_strategy(path)


def test_overrides_apply_in_order_and_parse_yaml_values():
    s = catalog.load_strategy("zero2", ["zero.stage=1", "zero.stage=3", "optimizer.betas=[0.8, 0.9]",
                                        "training.precision=fp16", "zero.offload_param.device=cpu"])
    assert (s.zero.stage, s.optimizer.betas, s.training.precision) == (3, (0.8, 0.9), "fp16")
    assert s.zero.offload_param.device == "cpu"


def test_a_bad_override_is_blamed_on_the_set_not_the_file():
    with pytest.raises(StrategyError, match=r"^--set zero.stage=abc: zero.stage: expected one of"):
        catalog.load_strategy("zero3", ["zero.stage=abc"])


def test_engine_sections_are_exclusive(write_yaml):
    path = write_yaml("x.yaml", "description: x\nextends: ddp\nzero: {stage: 2}\n")
    with pytest.raises(StrategyError, match="zero: section not used by engine 'ddp'"):
        catalog.load_strategy(path)


def test_engine_default_section_is_filled():
    assert catalog.load_strategy("ddp").ddp is not None
    assert catalog.load_strategy("ddp").zero is None
    assert catalog.load_strategy("zero1").ddp is None


def test_catalog_dir_can_be_pointed_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("description: mine\nengine: ddp\n")
    monkeypatch.setenv("LAUNCHDECK_STRATEGIES_DIR", str(tmp_path))
    assert catalog.names() == ["mine"]
    assert catalog.load_strategy("mine").engine == "ddp"


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1, "c": 2}}
    merged = catalog.deep_merge(base, {"a": {"b": 3}})
    assert merged == {"a": {"b": 3, "c": 2}} and base == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize("name", names())
def test_show_prints_a_strategy_file_that_reads_back_to_the_same_strategy(name, tmp_path):
    """`launchdeck show NAME > mine.yaml` (and a run record's strategy.yaml) is a strategy of its own."""
    strategy = load_strategy(name, ["training.micro_batch=3"])
    path = tmp_path / "mine.yaml"
    path.write_text(to_yaml(strategy))
    again = load_strategy(str(path))
    assert dataclasses.replace(again, name=strategy.name) == strategy
    assert to_yaml(again).splitlines()[1:] == to_yaml(strategy).splitlines()[1:]
