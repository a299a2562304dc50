"""`launchdeck estimate`: the CLI's contract, the estimate's laws, and the real engines' measured memory as
the oracle (CPU ranks, MemTracker: what `launch --measure-memory` writes to result.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launcher.estimate import Workload, estimate, max_micro_batch, per_rank
from launcher.estimate.units import parse_size
from launcher.render import Cluster, render
from launcher.spec.catalog import load_strategy, names
from launcher.spec.models import resolve

REPO = Path(__file__).resolve().parent.parent
LLAMA_7B = str(REPO / "tests" / "data" / "models" / "llama-2-7b.json")
KEYS = {"params", "grads", "optimizer", "activations", "buffers", "peak"}


def rendered(name: str, world: int, *overrides: str):
    return render(load_strategy(name, overrides), Cluster(world))


def run_json(cli, *args: str):
    result = cli("estimate", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_json_has_the_promised_keys_in_bytes(cli):
    data = run_json(cli, "zero3", "--model", "1b", "-n", "64", "--gpu-memory", "80GiB")
    assert data["params_total"] == resolve("1b").params() and data["world_size"] == 64
    assert KEYS <= set(data["per_rank"]) and all(isinstance(data["per_rank"][k], int) for k in KEYS)
    assert isinstance(data["fits"], bool) and isinstance(data["max_micro_batch"], int)
    assert data["micro_batch"] == load_strategy("zero3").training.micro_batch


def test_all_ranks_those_that_fit_first(cli):
    rows = run_json(cli, "--all", "--model", LLAMA_7B, "-n", "8", "--gpu-memory", "80GiB")
    assert sorted(row["strategy"] for row in rows) == sorted(names())
    verdicts = [row["fits"] for row in rows]
    assert verdicts == sorted(verdicts, reverse=True) and True in verdicts and False in verdicts
    fitting = [row["per_rank"]["peak"] for row in rows if row["fits"]]
    assert fitting == sorted(fitting)


def test_the_table_names_every_part(cli):
    result = cli("estimate", "zero2-offload", "--model", "125m", "-n", "8", "--gpu-memory", "24GiB")
    assert result.exit_code == 0
    header = result.stdout.splitlines()[1].split()
    assert header[:2] == ["strategy", "micro"] and {"peak", "activations", "offload/node"} <= set(header)
    assert "zero2-offload" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["zero3", "--gpu-memory", "80XB"], "not a size"),
    (["zero3", "--gpu-memory", "0GiB"], "more than zero"),
    (["zero3", "--micro-batch", "0"], "micro-batch"),
    (["zero3", "--seq-len", "-4"], "seq-len"),
    (["zero3", "-n", "0"], "world-size"),
    (["pipeline", "-n", "3"], "pipeline"),
    (["zero3", "--model", "13b"], "neither a preset"),
    (["zero3", "--gpu-memory", "9" * 400 + "GiB"], "too large"),
    (["nosuch"], "nosuch"),
    ([], "NAME or --all"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, message):
    result = cli("estimate", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_all_skips_what_cannot_run_at_this_size_with_a_note(cli):
    result = cli("estimate", "--all", "-n", "1", "--json")
    assert result.exit_code == 0
    assert "pipeline skipped" in result.stderr
    assert "pipeline" not in {row["strategy"] for row in json.loads(result.stdout)}


@pytest.mark.parametrize("config", [{"model_type": ["llama"]}, {"model_type": None}])
def test_a_config_without_a_model_type_string_is_refused(cli, tmp_path, config):
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = cli("estimate", "zero3", "--model", str(tmp_path))
    assert result.exit_code == 2 and "model_type must be a string" in result.stderr


def brute_force(sizes: list[int], parts: int) -> int:
    """The smallest possible largest group over every way to cut ``sizes`` into ``parts`` contiguous groups."""
    from itertools import combinations

    best = None
    for cuts in combinations(range(1, len(sizes)), parts - 1):
        bounds = [0, *cuts, len(sizes)]
        worst = max(sum(sizes[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
        best = worst if best is None else min(best, worst)
    return best


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 1000), min_size=1, max_size=9), data=st.data())
def test_pipeline_stages_are_balanced_as_well_as_possible(sizes, data):
    from launcher.estimate.deepspeed import balanced

    parts = data.draw(st.integers(1, len(sizes)))
    groups = balanced(sizes, parts)
    assert len(groups) == parts and groups[0][0] == 0 and groups[-1][1] == len(sizes) - 1
    assert all(b[0] == a[1] + 1 and a[0] <= a[1] for a, b in zip(groups, groups[1:], strict=False))
    assert max(sum(sizes[a:b + 1]) for a, b in groups) == brute_force(sizes, parts)


def test_a_config_that_is_not_a_decoder_lm_is_refused(cli, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 512}))
    result = cli("estimate", "zero3", "--model", str(tmp_path))
    assert result.exit_code == 2 and "not a decoder-only LM" in result.stderr


def test_estimate_imports_no_torch():
    probe = ("import sys; from launcher.cli import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
             "heavy = {m.split('.')[0] for m in sys.modules} & {'torch', 'deepspeed', 'transformers', 'numpy'}\n"
             "assert not heavy, heavy")
    argv = ["estimate", "--all", "--model", LLAMA_7B, "-n", "64", "--gpu-memory", "80GiB", "--cpu"]
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("text, size", [("80GiB", 80 * 2**30), ("40GB", 40 * 10**9), ("1.5 TiB", 3 * 2**39),
                                        ("24576MiB", 24 * 2**30), ("1024", 1024)])
def test_sizes_parse_as_written(text, size):
    assert parse_size(text) == size


# The laws any estimate must obey, over models, worlds and micro batches.
MODELS = ["tiny", "125m", "1b", LLAMA_7B]


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(MODELS), name=st.sampled_from(["ddp", "zero1", "zero2", "zero3", "zero3-offload"]),
       batch=st.integers(1, 32), world=st.sampled_from([2, 4, 8, 64]))
def test_the_peak_grows_with_the_micro_batch_and_holds_the_model_states(model, name, batch, world):
    r, shape = rendered(name, world), resolve(model)
    small = per_rank(r, Workload(shape, batch, 512))
    large = per_rank(r, Workload(shape, batch + 1, 512))
    assert large.peak >= small.peak and large.activations > small.activations  # the step may be the peak
    assert small.peak >= small.params + small.activations


@settings(max_examples=20, deadline=None)
@given(model=st.sampled_from(MODELS[1:]), world=st.sampled_from([2, 4, 8, 64]))
def test_more_sharding_never_holds_more_model_state(model, world):
    """(tiny is left out: its tensors are all under ZeRO-3's persistence threshold, so they stay whole)"""
    work = Workload(resolve(model), 1, 512)
    states = [per_rank(rendered(name, world), work).model_states for name in ("ddp", "zero1", "zero3")]
    assert states == sorted(states, reverse=True)
    wider = per_rank(rendered("zero3", world * 2), work)
    assert wider.model_states < per_rank(rendered("zero3", world), work).model_states


@settings(max_examples=20, deadline=None)
@given(model=st.sampled_from(MODELS), name=st.sampled_from(["ddp", "zero2", "zero3"]),
       gib=st.integers(1, 160))
def test_the_largest_micro_batch_is_the_boundary_of_fit(model, name, gib):
    r, work, memory = rendered(name, 8), Workload(resolve(model), 1, 1024), gib * 2**30
    largest = max_micro_batch(r, work, memory)
    if largest is None:
        assert per_rank(r, work).peak > memory
        return
    assert per_rank(r, replace(work, micro_batch=largest)).peak <= memory
    assert per_rank(r, replace(work, micro_batch=largest + 1)).peak > memory


def test_7b_matches_the_zero_paper_where_it_should():
    """ZeRO-3's model states approach (2 + 4 + 12)Ψ/N (the paper's 16Ψ/N plus fp32 gradients) as N grows;
    DDP keeps the paper's 16Ψ (fp32 weights instead of a 16-bit copy plus master)."""
    shape = resolve(LLAMA_7B)
    psi, work = shape.params(), Workload(shape, 1, 4096)
    assert per_rank(rendered("ddp", 64), work).model_states == 16 * psi
    zero3 = per_rank(rendered("zero3", 64), work)
    assert zero3.model_states == pytest.approx(18 * psi / 64, rel=0.01)
    zero1 = per_rank(rendered("zero1", 64), work)
    assert zero1.params == 2 * psi and zero1.optimizer == 12 * psi // 64


def test_offload_moves_state_to_the_host_not_away():
    work = Workload(resolve(LLAMA_7B), 1, 2048)
    plain, offload = per_rank(rendered("zero3", 8), work), per_rank(rendered("zero3-offload", 8), work)
    assert offload.peak < plain.peak
    assert offload.offload_cpu >= plain.optimizer + plain.grads
    on_cpu = per_rank(rendered("zero3-offload", 8), replace(work, cpu=True))
    assert on_cpu.offload_cpu == 0 and on_cpu.peak >= plain.peak


def test_the_estimate_object_reports_the_verdict():
    result = estimate(rendered("ddp", 8), Workload(resolve(LLAMA_7B), 1, 4096), gpu_memory=80 * 2**30)
    assert result.fits is False and result.max_micro_batch is None
    assert result.to_json()["fits"] is False


# The oracle: real engines on CPU ranks, measured tensor by tensor.
ORACLE = ["ddp", "zero2", "zero3", "pipeline", "fsdp2", "autotp"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ORACLE)
def test_estimate_matches_what_the_ranks_measure(name, tmp_path, cli):
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "launcher", "launch", name, "--cpu", "--nproc", "2", "--steps", "2",
                           "--measure-memory", "--run-dir", str(run_dir)], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    memory = json.loads((run_dir / "result.json").read_text())["memory"]
    assert len(memory["ranks"]) == 2 and KEYS <= set(memory)
    est = run_json(cli, name, "-n", "2", "--cpu")["per_rank"]
    assert est["peak"] == pytest.approx(memory["peak"], rel=0.10)
    states = lambda d: d["params"] + d["grads"] + d["optimizer"]  # noqa: E731
    assert states(est) == pytest.approx(states(memory), rel=0.03)


def forward_activations(model, inputs, mode: str) -> int:
    """Bytes the forward pass (loss included) leaves for backward, measured by MemTracker in this process."""
    torch = pytest.importorskip("torch")
    from torch.distributed._tools.mem_tracker import MemTracker

    from launcher.payload.train.pipeline_model import lm_loss

    tracker = MemTracker()
    with tracker:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            loss = lm_loss(model(input_ids=inputs).logits, inputs)
        current = tracker.get_tracker_snapshot("current")[torch.device("cpu")]
    assert loss.requires_grad
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return current["Total"] - params - inputs.numel() * inputs.element_size() - loss.numel() * 4


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt2-dropout"])
@pytest.mark.parametrize("mode", ["half", "autocast", "fp32"])
def test_activations_are_what_autograd_keeps(family, mode):
    """The per-layer terms against the tensors the real transformers model saves (forward only, CPU)."""
    torch = pytest.importorskip("torch")
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaForCausalLM

    from launcher.estimate.activations import Activations
    from launcher.payload.train.model import llama_config
    from launcher.spec.models import from_hf_config

    torch.manual_seed(0)
    if family == "llama":
        model, shape = LlamaForCausalLM(llama_config("tiny")), resolve("tiny")
    else:
        dropout = 0.1 if family == "gpt2-dropout" else 0.0
        config = {"model_type": "gpt2", "n_embd": 192, "n_layer": 3, "n_head": 6, "vocab_size": 300,
                  "n_positions": 256, "attn_pdrop": dropout, "resid_pdrop": dropout, "embd_pdrop": dropout,
                  "bos_token_id": None, "eos_token_id": None}
        hf = GPT2Config(**{k: v for k, v in config.items() if k != "model_type"})
        hf._attn_implementation = "sdpa"
        model, shape = GPT2LMHeadModel(hf), from_hf_config(config)
    model = model.to(torch.bfloat16) if mode == "half" else model
    inputs = torch.randint(0, shape.vocab, (2, 128))
    expected = Activations(shape, 2, 128, mode, cpu=True).total()
    assert forward_activations(model.train(), inputs, mode) == pytest.approx(expected, rel=0.03)


def test_measure_memory_refuses_a_users_script(cli):
    result = cli("launch", "ddp", "--cpu", "--measure-memory", "--dry-run", "--", "train.py")
    assert result.exit_code == 2 and "cannot measure your script" in result.stderr
