"""The strict loader: unknown keys, wrong types and bounds are refused with the key's path."""

from __future__ import annotations

import pytest

from launcher.spec import schema
from launcher.spec.strategy import Offload, Optimizer, Training, Zero


def test_numbers_written_the_yaml_1_1_way_are_numbers():
    # PyYAML reads 5e8 and 3e-4 (no dot) as strings; users write them all the time.
    zero = schema.load(Zero, {"reduce_bucket_size": "5e8", "stage": 3})
    assert zero.reduce_bucket_size == 500_000_000 and isinstance(zero.reduce_bucket_size, int)
    assert schema.load(Optimizer, {"lr": "3e-4"}).lr == pytest.approx(3e-4)


def test_nested_sections_and_defaults():
    zero = schema.load(Zero, {"offload_param": {"device": "cpu"}, "stage": 3})
    assert zero.offload_param == Offload(device="cpu", pin_memory=True)
    assert zero.offload_optimizer.device == "none"
    assert zero.overlap_comm is True


@pytest.mark.parametrize("cls, data, path, problem", [
    (Zero, {"stagee": 1}, "zero.stagee", "did you mean 'stage'"),
    (Zero, {"stage": 4}, "zero.stage", "one of 0, 1, 2, 3"),
    (Zero, {"stage": True}, "zero.stage", "one of 0, 1, 2, 3"),
    (Zero, {"stage": "3"}, "zero.stage", "one of 0, 1, 2, 3"),
    (Zero, {"overlap_comm": "yes"}, "zero.overlap_comm", "true or false"),
    (Zero, {"reduce_bucket_size": 1.5}, "zero.reduce_bucket_size", "an integer"),
    (Zero, {"reduce_bucket_size": 0}, "zero.reduce_bucket_size", ">= 1"),
    (Zero, {"offload_param": {"device": "gpu"}}, "zero.offload_param.device", "none, cpu, nvme"),
    (Zero, {"offload_param": "cpu"}, "zero.offload_param", "a mapping"),
    (Zero, {"hpz_partition_size": "node"}, "zero.hpz_partition_size", "an integer or one of gpus_per_node"),
    (Training, {"micro_batch": 0}, "zero.micro_batch", ">= 1"),
    (Training, {"grad_clip": float("nan")}, "zero.grad_clip", "a number"),
    (Optimizer, {"betas": [0.9]}, "zero.betas", "a list of 2 values"),
    (Optimizer, {"betas": [0.9, "x"]}, "zero.betas[1]", "a number"),
    (Optimizer, ["lr", 1], "zero", "a mapping"),
])
def test_bad_values_name_the_path(cls, data, path, problem):
    with pytest.raises(schema.SchemaError) as info:
        schema.load(cls, data, "zero")
    assert info.value.path == path
    assert problem in info.value.problem


def test_dump_round_trips():
    zero = schema.load(Zero, {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/nvme"}})
    assert schema.load(Zero, schema.dump(zero)) == zero


def test_every_knob_has_a_description():
    import dataclasses

    from launcher.spec import strategy as model

    classes = [c for c in vars(model).values() if dataclasses.is_dataclass(c)]
    assert len(classes) >= 9
    for cls in classes:
        for f in dataclasses.fields(cls):
            assert len(f.metadata.get("doc", "")) > 10, f"{cls.__name__}.{f.name} has no description"
