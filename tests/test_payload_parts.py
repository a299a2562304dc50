"""Payload pieces in-process: the pipeline split computes the same model, schedules, data, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from launcher.payload.train import checkpoint
from launcher.payload.train.schedule import lr_factor


def test_pipeline_layers_compute_the_same_causal_lm():
    from launcher.payload.train.model import build_model
    from launcher.payload.train.pipeline_model import layers_of, lm_loss

    model = build_model("tiny", seq_len=32, seed=3).eval()
    inputs = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    hidden = inputs
    with torch.no_grad():
        for layer in layers_of(model):
            hidden = layer(hidden)
        expected = model(input_ids=inputs).logits
        assert torch.allclose(hidden, expected, atol=1e-5)
        # causal: changing a later token leaves earlier positions' logits alone
        changed = inputs.clone()
        changed[:, -1] = (changed[:, -1] + 1) % 256
        assert torch.allclose(model(input_ids=changed).logits[:, :-1], expected[:, :-1], atol=1e-5)
        assert math.isclose(lm_loss(expected, inputs).item(), math.log(256), rel_tol=0.1)  # untrained ≈ uniform


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
@pytest.mark.parametrize("warmup, total", [(10, 100), (1, 10), (0, 3)])
def test_the_schedule_is_deepspeeds_own(kind, warmup, total):
    """The oracle: DeepSpeed's scheduler as the rendered config builds it, stepped as its engine steps it (the
    LR each optimizer step runs with, read before the step)."""
    from deepspeed.runtime.lr_schedules import WarmupCosineLR, WarmupDecayLR, WarmupLR

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ds = max(1, warmup)  # render.common.warmup_steps is at least 1
    scheduler = {"cosine": lambda: WarmupCosineLR(optimizer, total, 0.0, ds, 0.1, "linear"),
                 "linear": lambda: WarmupDecayLR(optimizer, total, 0.0, 1.0, ds, "linear"),
                 "constant": lambda: WarmupLR(optimizer, 0.0, 1.0, ds, "linear")}[kind]()
    theirs = []
    for _ in range(total + 1):
        theirs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    ours = [lr_factor(s, kind, ds, total, 0.1) for s in range(total + 1)]
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours[0] == ours[1] == 0 and 0 < max(ours) <= 1.0


def test_batches_are_a_function_of_step_micro_and_rank():
    from launcher.payload.train.data import Batches

    corpus = np.frombuffer(bytes(range(256)) * 64, dtype=np.uint8)
    a, b = (Batches(corpus, 16, 4, seed=1, dp_rank=0, dp_size=2, global_batch=24) for _ in range(2))
    x, y = a.get(5, 1)
    assert torch.equal(x, b.get(5, 1)[0]) and torch.equal(x[:, 1:], y[:, :-1])
    assert not torch.equal(x, a.get(5, 2)[0])
    assert not torch.equal(x, Batches(corpus, 16, 4, seed=1, dp_rank=1, dp_size=2, global_batch=24).get(5, 1)[0])


def test_a_global_batch_is_the_same_samples_at_any_data_parallel_size():
    """A restart on fewer nodes keeps the global batch: the step must train on the same samples."""

    from launcher.payload.train.data import Batches

    corpus = np.frombuffer(bytes(range(251)) * 97, dtype=np.uint8)

    def samples(dp_size: int, accum: int) -> list[bytes]:
        ranks = [Batches(corpus, 8, 2, seed=3, dp_rank=r, dp_size=dp_size, global_batch=8) for r in range(dp_size)]
        return sorted(row.numpy().tobytes() for r in ranks for m in range(accum) for row in r.get(7, m)[0])

    assert samples(4, 1) == samples(2, 2) == samples(1, 4)
    assert samples(4, 1) != sorted(row.numpy().tobytes() for row in Batches(corpus, 8, 8, 3, 0).get(8, 0)[0])
    with pytest.raises(ValueError, match="micro step 4"):
        Batches(corpus, 8, 2, seed=3, dp_rank=0, dp_size=1, global_batch=8).get(7, 4)
    assert torch.equal(*(Batches(corpus, 8, 2, 3, 0, 1, 8).get(7, 0)[0] for _ in range(2)))


def test_corpus_from_file_folder_and_jsonl(tmp_path):
    from launcher.payload.train.data import load_corpus

    (tmp_path / "a.txt").write_text("hello " * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("world " * 1000)
    (tmp_path / "c.jsonl").write_text(f'{{"text": "{"x" * 3000}"}}\n{{"text": "{"y" * 3000}"}}\n')
    assert load_corpus(str(tmp_path / "a.txt")).size == 6000
    assert load_corpus(str(tmp_path)).size == 6000 + 6000 + 6002
    assert bytes(load_corpus(str(tmp_path / "c.jsonl"))[2998:3004]) == b"xx\n\nyy"
    assert load_corpus(None).size > 1_000_000  # the stdlib sources
    with pytest.raises(SystemExit, match="only 6 bytes"):
        (tmp_path / "tiny.txt").write_text("small!")
        load_corpus(str(tmp_path / "tiny.txt"))


def test_checkpoint_publish_is_atomic_and_latest_moves(tmp_path):
    root = tmp_path / "ckpt"
    root.mkdir()
    for step in (4, 8):
        checkpoint.partial_dir(root, step).mkdir()
        (checkpoint.partial_dir(root, step) / "state.pt").write_text(str(step))
        checkpoint.publish(root, step)
    # a save interrupted half way: its partial directory never becomes `latest`
    checkpoint.partial_dir(root, 12).mkdir()
    assert checkpoint.latest(root) == root / "step-000008"
    assert checkpoint.latest(tmp_path) is None  # "ckpt" is neither the root nor root/checkpoints
    assert (root / "latest").read_text() == "step-000008\n"
    checkpoint.sweep_partials(root)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-000004", "step-000008"]


def test_latest_is_found_from_a_run_directory(tmp_path):
    root = tmp_path / "checkpoints"
    root.mkdir()
    checkpoint.partial_dir(root, 3).mkdir()
    checkpoint.publish(root, 3)
    assert checkpoint.latest(tmp_path) == root / "step-000003"


def test_throughput_counts_training_steps_only_and_progress_lines_their_window(capsys):
    """Time between steps (saves, digests) never counts, the warmup steps are left out, and a progress
    line's rate covers exactly the steps since the previous line (a partial last window included)."""
    torch = pytest.importorskip("torch")
    from launcher.payload.train.metrics import Meter

    meter = Meter(total_steps=7, tokens_per_step=100, log_interval=3, device=torch.device("cpu"), started=0.0,
                  verbose=True, warmup=2)
    durations = [5.0, 3.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    now = 0.0
    for step, seconds in enumerate(durations):
        now += seconds + 100.0  # a long checkpoint save between every two steps
        meter.update(step, loss=1.0, lr=1e-3, seconds=seconds, now=now)
    summary = meter.summary()
    assert summary["steps_per_s"] == pytest.approx(5 / 2.0)
    assert summary["tokens_per_s"] == pytest.approx(250.0)
    assert summary["timed_steps"] == 5 and summary["step_time_median_s"] == 0.5
    assert summary["time_to_first_step_s"] == 105.0
    rates = [line.split("tok/s ")[1].split()[0] for line in capsys.readouterr().out.splitlines()]
    # lines after steps 1, 3, 6 and 7: windows [5], [3, 0.5], [0.5, 0.5, 0.25], [0.25]
    assert rates == ["20", "57", "240", "400"]


def test_a_config_run_at_another_world_size_keeps_its_global_batch():
    """An elastic restart may find fewer ranks than the config was rendered for: grad_accum is solved again."""
    from launcher.payload.train.engines import deepspeed, training_at_world

    ddp = {"training": {"world_size": 4, "data_parallel_size": 4, "micro_batch": 2, "grad_accum": 1,
                        "global_batch": 8}}
    assert training_at_world(ddp, 4) is ddp
    assert training_at_world(ddp, 2)["training"] == {"world_size": 2, "data_parallel_size": 2, "micro_batch": 2,
                                                     "grad_accum": 2, "global_batch": 8}
    with pytest.raises(SystemExit, match="global batch 8 cannot be kept at data-parallel size 3"):
        training_at_world(ddp, 3)
    ds = {"train_batch_size": 16, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2}
    assert deepspeed.at_world(ds, 4) is ds and deepspeed.at_world(ds, 1)["gradient_accumulation_steps"] == 8
    piped = {**ds, "pipeline": {"stages": 2}}
    assert deepspeed.at_world(piped, 2)["gradient_accumulation_steps"] == 8  # one data-parallel replica
