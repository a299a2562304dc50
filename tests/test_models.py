"""Model shapes from presets and Hugging Face configs: parameter counts against the real model on torch's meta
device (the oracle), and bad configs refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.errors import StrategyError
from launcher.spec import models

CONFIGS = sorted((Path(__file__).parent / "data" / "models").glob("*.json"))


def meta_tensors(config: dict) -> list[int]:
    """The sorted element counts of the parameter tensors of the transformers model, built on the meta device."""
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForCausalLM

    hf = AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf)
    return sorted(p.numel() for p in model.parameters())  # tied weights appear once


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_hf_config_counts_match_the_real_model(path):
    config = json.loads(path.read_text())
    shape = models.resolve(str(path))
    tensors = meta_tensors(config)
    assert sorted(shape.tensors()) == tensors
    assert (shape.params(), shape.largest_tensor()) == (sum(tensors), max(tensors))


@pytest.mark.parametrize("name", sorted(models.PRESETS))
def test_preset_counts_match_the_payload_model(name):
    torch = pytest.importorskip("torch")
    from transformers import LlamaForCausalLM

    from launcher.payload.train.model import llama_config

    with torch.device("meta"):
        model = LlamaForCausalLM(llama_config(name))
    assert models.preset(name).params() == sum(p.numel() for p in model.parameters())


def test_a_folder_with_config_json_is_a_model(tmp_path):
    (tmp_path / "config.json").write_text((CONFIGS[0]).read_text())
    assert models.resolve(str(tmp_path)).params() == models.resolve(str(CONFIGS[0])).params()


@pytest.mark.parametrize("config, message", [
    ({"model_type": "bert", "hidden_size": 8}, "not a decoder-only LM"),
    ({"model_type": "llama", "hidden_size": 0, "num_attention_heads": 2}, "hidden_size must be a positive"),
    ({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 8,
      "num_hidden_layers": 2, "vocab_size": 10, "num_key_value_heads": 3}, "do not split"),
    ({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4}, "is missing"),
    ([1, 2], "holds an object"),
])
def test_bad_configs_are_refused(tmp_path, config, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(StrategyError, match=message):
        models.resolve(str(path))


def test_unknown_names_and_unreadable_files_are_refused(tmp_path):
    with pytest.raises(StrategyError, match="neither a preset"):
        models.resolve("13b")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(StrategyError, match="not a readable JSON"):
        models.resolve(str(tmp_path / "config.json"))
