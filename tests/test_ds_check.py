"""Every rendered DeepSpeed config against DeepSpeed's own parser, at the world size it is for."""

from __future__ import annotations

import copy
import random

import pytest

from launcher.errors import ConfigCheckError, RenderError
from launcher.render import Cluster, RenderedConfig, render
from launcher.render.deepspeed_check import check, parse
from launcher.render.ds_keys import TOP_LEVEL_KEYS
from launcher.spec.catalog import load_strategy, names

pytestmark = pytest.mark.slow
DEEPSPEED = [n for n in names() if load_strategy(n).engine == "deepspeed"]
WORLDS = [1, 2, 8, 64]


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("name", DEEPSPEED)
def test_catalog_renders_and_deepspeed_accepts_it(name, world):
    strategy = load_strategy(name)
    split = strategy.pipeline.stages if strategy.pipeline else \
        strategy.tensor_parallel.autotp_size if strategy.tensor_parallel else 1  # ranks per model replica
    if world < split:
        with pytest.raises(RenderError, match="needs at least 2 ranks"):
            render(strategy, Cluster(world))
        return
    rendered = render(strategy, Cluster(world, 8))
    check(rendered)
    c = rendered.config
    assert c["train_batch_size"] == (c["train_micro_batch_size_per_gpu"] * c["gradient_accumulation_steps"]
                                     * rendered.data_parallel_size)


def test_the_check_catches_wrong_batch_arithmetic():
    rendered = render(load_strategy("zero2"), Cluster(8))
    bad = copy.deepcopy(rendered.config)
    bad["train_batch_size"] += 8
    with pytest.raises(ConfigCheckError, match="40 != 4 \\* 1 \\* 8"):
        check(RenderedConfig(rendered.strategy, rendered.cluster, bad, 8))


def test_the_check_catches_keys_deepspeed_would_ignore():
    rendered = render(load_strategy("zero2"), Cluster(8))
    bad = {**rendered.config, "zero_optimisation": {"stage": 3}}
    with pytest.raises(ConfigCheckError, match="ignores top-level key\\(s\\): zero_optimisation"):
        check(RenderedConfig(rendered.strategy, rendered.cluster, bad, 8))


def test_the_check_catches_bad_keys_inside_sections():
    rendered = render(load_strategy("zero2"), Cluster(8))
    bad = copy.deepcopy(rendered.config)
    bad["zero_optimization"]["overlap_comms"] = True
    with pytest.raises(ConfigCheckError, match="overlap_comms"):
        check(RenderedConfig(rendered.strategy, rendered.cluster, bad, 8))


def test_hf_flavour_checks_through_its_resolved_twin():
    check(render(load_strategy("zero3-offload"), Cluster(8), hf=True))


def test_our_top_level_key_list_is_exactly_what_deepspeed_reads():
    seen = parse({"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1}, 1, 1)
    # sequence_parallel_size is read only when DeepSpeed runs without an mpu (HF zero.init);
    # our check always hands it one.
    assert seen == TOP_LEVEL_KEYS - {"sequence_parallel_size"}


def _random_overrides(rng: random.Random) -> list[str]:
    choices = {
        "training.micro_batch": [1, 2, 3, 4, 8], "training.precision": ["bf16", "fp16", "fp32"],
        "training.global_batch": [None, 8, 24, 64, 96, 256, 1000], "zero.stage": [0, 1, 2, 3],
        "pipeline.stages": [1, 2, 3, 4], "zero.offload_optimizer.device": ["none", "cpu"],
        "training.grad_accum": [None, 1, 2, 5], "scheduler.type": ["cosine", "constant"],
        "zero.hpz_partition_size": [1, 2, "gpus_per_node"], "training.steps": [1, 7, 1000],
    }
    picked = rng.sample(sorted(choices), k=rng.randint(1, 5))
    return [f"{key}={'null' if (v := rng.choice(choices[key])) is None else v}" for key in picked]


def test_render_and_check_never_disagree():
    """Whatever render accepts, DeepSpeed's parser accepts too (seeded random sample)."""
    rng = random.Random(20261122)
    accepted = 0
    for _ in range(150):
        name, world = rng.choice(DEEPSPEED), rng.choice([1, 2, 3, 4, 6, 8, 12, 16, 64, 128])
        overrides = _random_overrides(rng)
        if name != "pipeline":
            overrides = [o for o in overrides if not o.startswith("pipeline.")]
        try:
            rendered = render(load_strategy(name, overrides), Cluster(world, rng.choice([None, 4, 8])))
        except (RenderError, Exception) as exc:  # noqa: B014 - refusals are fine, only acceptance is checked
            assert type(exc).__module__.startswith("launcher"), exc
            continue
        check(rendered)
        accepted += 1
    assert accepted > 40  # the sample really exercised the parser
