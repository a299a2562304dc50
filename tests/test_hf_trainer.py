"""The --hf flavour goes through transformers' own DeepSpeed config filling and comes out whole."""

from __future__ import annotations

import types

import pytest

from launcher.render import Cluster, render
from launcher.render.deepspeed_check import _leaves, parse
from launcher.spec.catalog import load_strategy, names

pytestmark = pytest.mark.slow
HF_ABLE = [n for n in names() if (s := load_strategy(n)).engine == "deepspeed" and not s.pipeline]


@pytest.mark.parametrize("name", HF_ABLE)
def test_trainer_fills_every_auto(name, tmp_path):
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=3,
                             gradient_accumulation_steps=2, learning_rate=1e-4, bf16=True, max_grad_norm=0.5,
                             warmup_steps=5, report_to=[])
    strategy = load_strategy(name)
    world = strategy.tensor_parallel.autotp_size if strategy.tensor_parallel else 1  # the fewest ranks it runs on
    hf = HfTrainerDeepSpeedConfig(render(strategy, Cluster(world), hf=True).config)
    hf.trainer_config_process(args)
    model = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=64))
    hf.trainer_config_finalize(args, model, num_training_steps=50)
    filled = hf.config
    assert "auto" not in list(_leaves(filled))
    assert (filled["train_micro_batch_size_per_gpu"], filled["gradient_accumulation_steps"]) == (3, 2)
    assert filled["optimizer"]["params"]["lr"] == 1e-4 and filled["gradient_clipping"] == 0.5
    assert filled["scheduler"]["params"]["total_num_steps"] == 50
    assert filled["zero_optimization"]["reduce_bucket_size"] == 64 * 64
    parse(filled, world_size=1, data_parallel_size=1)
