"""The rendered values a user cares about, per strategy (a table of data), plus the batch arithmetic."""

from __future__ import annotations

import pytest

from launcher.errors import RenderError
from launcher.render import Cluster, render
from launcher.spec.catalog import load_strategy


def at(config: dict, dotted: str):
    node = config
    for key in dotted.split("."):
        node = node[key]
    return node


# strategy, world size, gpus per node, {dotted path: expected value}, paths that must be absent
CASES = [
    ("ddp", 8, None, {"engine": "ddp", "ddp.bucket_cap_mb": 25.0, "ddp.gradient_as_bucket_view": True,
                      "ddp.static_graph": False, "training.global_batch": 32, "training.precision": "bf16",
                      "training.scheduler.warmup_steps": 10}, []),
    ("zero1", 8, None, {"zero_optimization.stage": 1, "zero_optimization.allgather_bucket_size": 500_000_000,
                        "train_batch_size": 32, "bf16.enabled": True, "optimizer.type": "AdamW",
                        "optimizer.params.lr": 3e-4, "scheduler.type": "WarmupCosineLR",
                        "scheduler.params.cos_min_ratio": 0.1, "gradient_clipping": 1.0},
     ["fp16", "zero_optimization.stage3_prefetch_bucket_size", "pipeline"]),
    ("zero2", 2, None, {"zero_optimization.stage": 2, "zero_optimization.overlap_comm": True,
                        "zero_optimization.contiguous_gradients": True, "train_batch_size": 8}, []),
    ("zero3", 64, 8, {"zero_optimization.stage": 3, "zero_optimization.stage3_prefetch_bucket_size": 50_000_000,
                      "zero_optimization.stage3_param_persistence_threshold": 100_000,
                      "zero_optimization.stage3_gather_16bit_weights_on_model_save": True,
                      "zero_optimization.zero_hpz_partition_size": 1, "train_batch_size": 256},
     ["zero_optimization.allgather_bucket_size", "zero_optimization.offload_param"]),
    ("zero2-offload", 8, None, {"zero_optimization.stage": 2, "zero_optimization.offload_optimizer.device": "cpu",
                                "zero_optimization.offload_optimizer.pin_memory": True},
     ["zero_optimization.offload_param"]),
    ("zero3-offload", 8, None, {"zero_optimization.offload_optimizer.device": "cpu",
                                "zero_optimization.offload_param.device": "cpu",
                                "zero_optimization.offload_param.pin_memory": True}, []),
    ("zeropp", 64, 8, {"zero_optimization.zero_quantized_weights": True,
                       "zero_optimization.zero_quantized_gradients": True,
                       "zero_optimization.zero_hpz_partition_size": 8}, []),
    ("zeropp", 16, 4, {"zero_optimization.zero_hpz_partition_size": 4}, []),
    ("zeropp", 2, None, {"zero_optimization.zero_hpz_partition_size": 2}, []),
    ("pipeline", 8, None, {"pipeline.stages": 2, "pipeline.partition": "parameters", "zero_optimization.stage": 1,
                           "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 4,
                           "train_batch_size": 2 * 4 * 4}, []),
    ("horovod", 8, None, {"engine": "horovod", "env.HOROVOD_FUSION_THRESHOLD": str(64 * 1024 * 1024),
                          "env.HOROVOD_CYCLE_TIME": "5", "optimizer_wrapper.compression": "none",
                          "optimizer_wrapper.op": "Average", "optimizer_wrapper.backward_passes_per_step": 1,
                          "training.global_batch": 32, "training.precision": "fp32"}, []),
]


@pytest.mark.parametrize("name, world, gpn, expected, absent", CASES,
                         ids=[f"{c[0]}-w{c[1]}" for c in CASES])
def test_rendered_values(name, world, gpn, expected, absent):
    config = render(load_strategy(name), Cluster(world, gpn)).config
    for path, value in expected.items():
        assert at(config, path) == value, path
    for path in absent:
        with pytest.raises(KeyError):
            at(config, path)


def test_horovodrun_flags_match_the_env():
    config = render(load_strategy("horovod", ["horovod.hierarchical_allreduce=true", "horovod.compression=fp16",
                                              "horovod.op=adasum", "training.grad_accum=4"]), Cluster(16)).config
    args = config["horovodrun"]
    assert args[:3] == ["-np", "16", "--gloo"]
    assert args[args.index("--fusion-threshold-mb") + 1] == "64"
    assert "--hierarchical-allreduce" in args and "--hierarchical-allgather" not in args
    assert config["env"]["HOROVOD_HIERARCHICAL_ALLREDUCE"] == "1"
    assert config["optimizer_wrapper"] == {"compression": "fp16", "op": "Adasum", "backward_passes_per_step": 4,
                                           "gradient_predivide_factor": 1.0}


@pytest.mark.parametrize("precision, present, missing", [
    ("fp16", "fp16", "bf16"), ("bf16", "bf16", "fp16"), ("fp32", None, "bf16"),
])
def test_precision_sections(precision, present, missing):
    config = render(load_strategy("zero2", [f"training.precision={precision}"]), Cluster(8)).config
    if present:
        assert config[present]["enabled"] is True
    assert missing not in config
    if precision == "fp16":
        assert config["fp16"]["loss_scale"] == 0 and config["fp16"]["initial_scale_power"] == 16


@pytest.mark.parametrize("world, micro, global_batch, accum", [(8, 4, 256, 8), (64, 2, 1024, 8), (1, 4, 4, 1)])
def test_grad_accum_is_solved_from_global_batch(world, micro, global_batch, accum):
    config = render(load_strategy("zero3", [f"training.micro_batch={micro}",
                                            f"training.global_batch={global_batch}"]), Cluster(world)).config
    assert config["gradient_accumulation_steps"] == accum
    assert config["train_batch_size"] == global_batch == micro * accum * world


def test_pipeline_divides_the_world_for_data_parallelism():
    config = render(load_strategy("pipeline", ["pipeline.stages=4", "training.grad_accum=null",
                                               "training.global_batch=64"]), Cluster(16)).config
    # 16 ranks / 4 stages = 4 data-parallel replicas; 64 / (2 micro * 4 dp) = 8 micro batches
    assert config["gradient_accumulation_steps"] == 8 and config["train_batch_size"] == 64


@pytest.mark.parametrize("name, overrides, world, message", [
    ("pipeline", ["pipeline.stages=4"], 6, "world size 6 is not divisible by pipeline.stages 4 (6 % 4 = 2)"),
    ("pipeline", [], 1, "pipeline.stages 2 needs at least 2 ranks; world size is 1"),
    ("zero3", ["training.global_batch=100"], 8, "global_batch 100 is not divisible by micro_batch 4 × "
                                                "data-parallel size 8 = 32 (100 / 32 = 3.125)"),
    ("zero3", ["training.global_batch=64", "training.grad_accum=4"], 8,
     "global_batch 64 != micro_batch 4 × grad_accum 4 × data-parallel size 8 = 128"),
    ("zeropp", ["zero.hpz_partition_size=3"], 8, "zero.hpz_partition_size 3 does not divide world size 8"),
    ("zero1", ["deepspeed.zero_optimisation={stage: 2}"], 8, "did you mean 'zero_optimization'"),
    ("zero1", ["deepspeed.train_batch_size=64"], 8, "solved by launchdeck"),
    ("pipeline", ["deepspeed.pipeline={stagez: 2}"], 8, "not a DeepSpeed pipeline key"),
])
def test_impossible_requests_print_every_number(name, overrides, world, message):
    with pytest.raises(RenderError) as info:
        render(load_strategy(name, overrides), Cluster(world))
    assert message in str(info.value)


def test_raw_deepspeed_keys_merge_in():
    config = render(load_strategy("zero1", ["deepspeed.comms_logger={enabled: true}",
                                            "deepspeed.zero_optimization={round_robin_gradients: true}"]),
                    Cluster(8)).config
    assert config["comms_logger"] == {"enabled": True}
    assert config["zero_optimization"]["round_robin_gradients"] is True
    assert config["zero_optimization"]["stage"] == 1


def test_hf_flavour_has_auto_exactly_where_the_trainer_fills():
    config = render(load_strategy("zero3"), Cluster(8), hf=True).config
    assert config["train_batch_size"] == config["train_micro_batch_size_per_gpu"] == "auto"
    assert config["optimizer"]["params"]["lr"] == "auto"
    assert config["scheduler"]["params"]["total_num_steps"] == "auto"
    assert config["zero_optimization"]["stage"] == 3  # the strategy's own choices stay
    assert config["zero_optimization"]["stage3_max_live_parameters"] == 1_000_000_000


def test_hf_flavour_is_refused_where_the_trainer_cannot_follow():
    with pytest.raises(RenderError, match="pipeline"):
        render(load_strategy("pipeline"), Cluster(8), hf=True)
    with pytest.raises(RenderError, match="engine ddp"):
        render(load_strategy("ddp"), Cluster(8), hf=True)


def test_warmup_is_never_zero_steps():
    config = render(load_strategy("zero1", ["scheduler.warmup_ratio=0"]), Cluster(2)).config
    assert config["scheduler"]["params"]["warmup_num_steps"] == 1
