"""Quantization-aware training and pruning: the weights that come out hold what the strategy asked for."""

from __future__ import annotations

import pytest
import torch

from launcher.payload.train.compression import Compressor, FakeQuantize, achieved
from launcher.payload.train.model import build_model
from launcher.payload.train.pipeline_model import lm_loss

from .launching import launchdeck, result

SETTINGS = {"weight_bits": None, "start_bits": 8, "quantize_offset": 0, "sparsity": 0.0, "head_sparsity": 0.0,
            "prune_offset": 0}


def test_fake_quantization_is_symmetric_integers_times_a_row_scale():
    weight = torch.randn(8, 32)
    levels = 7  # 4 bits
    scale = weight.abs().amax(dim=1, keepdim=True) / levels
    oracle = torch.clamp(torch.round(weight / scale), -levels, levels) * scale  # a second implementation
    assert torch.allclose(FakeQuantize(4)(weight), oracle, atol=1e-6)
    weight.requires_grad_(True)
    FakeQuantize(4)(weight).sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(weight))  # straight through


def _train(settings: dict, steps: int = 3) -> dict:
    model = build_model("tiny", 32, seed=1)
    compressor = Compressor({**SETTINGS, **settings}, model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = torch.randint(0, 256, (2, 33))
    for step in range(steps):
        compressor.before_step(step)
        lm_loss(model(input_ids=inputs[:, :-1]).logits, inputs[:, 1:]).backward()
        optimizer.step()
        optimizer.zero_grad()
    return compressor.bake()


def test_qat_leaves_weights_with_at_most_2_to_the_bits_levels_per_row():
    assert _train({"weight_bits": 4, "quantize_offset": 1})["weight_bits"] <= 4  # 15 levels: log2 = 3.91
    assert _train({"weight_bits": 3, "start_bits": 3})["weight_bits"] <= 3


def test_a_resumed_run_quantizes_with_the_bits_of_its_step():
    model = build_model("tiny", 32, seed=1)
    compressor = Compressor({**SETTINGS, "weight_bits": 4, "quantize_offset": 3}, model)
    compressor.before_step(5)  # resumed at step 5: it never saw step 3
    assert {q.bits for q in compressor.quantizers} == {4}
    compressor.before_step(0)
    assert {q.bits for q in compressor.quantizers} == {8}


def test_pruning_zeroes_the_fraction_asked_for_and_whole_heads():
    done = _train({"sparsity": 0.5, "head_sparsity": 0.5, "prune_offset": 1})
    assert done["mlp_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert done["heads_kept"] == [3, 3, 3, 3] and done["heads"] == 6


def test_nothing_asked_nothing_changed():
    model = build_model("tiny", 32, seed=1)
    assert achieved(list(model.model.layers), 6)["mlp_sparsity"] == 0


@pytest.mark.slow
def test_a_pruned_qat_run_reports_what_it_achieved_and_saves_plain_weights(tmp_path):
    run_dir = tmp_path / "run"
    done = launchdeck("launch", "prune", "--cpu", "--steps", "8", "--run-dir", str(run_dir), "--seq-len", "64",
                      "--set", "compression.prune_offset=3", "--set", "compression.weight_bits=4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    r = result(run_dir)
    assert r["compression"]["mlp_sparsity"] >= 0.5 and r["compression"]["weight_bits"] <= 4
    assert r["compression"]["heads_kept"] == [4, 4, 4, 4] and r["params_identical"] is True
    state = torch.load(run_dir / "checkpoints" / "step-000008" / "state.pt", weights_only=True)["model"]
    down = state["model.layers.0.mlp.down_proj.weight"]  # baked: a plain weight, half of it exact zeros
    assert (down == 0).float().mean() >= 0.5 and not any("parametrizations" in key for key in state)
