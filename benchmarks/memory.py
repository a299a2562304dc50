"""`make bench-memory`: `launchdeck estimate` against the memory each rank measures, for every catalog strategy.

For each model (MODELS, default "tiny 125m") and world size (WORLDS, default "2 4"): a CPU launch of every
strategy with --measure-memory (2 steps; SEQ_LEN tokens, default 256), and `launchdeck estimate --cpu` of the
same shape. Per strategy: estimated and measured peak and model states (params + grads + optimizer) per rank,
with DeepSpeed's own model-state estimators (ZeRO-2/3 only) and `accelerate estimate-memory`'s training
peak beside them. Writes runs/bench-memory/report.md
and report.json; exits 1 if a peak misses by more than 10% or model states by more than 3%.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from common import LAUNCHDECK, REPO, read_result, table, timed

OUT = REPO / "runs" / "bench-memory"
PEAK_TOLERANCE, STATES_TOLERANCE = 0.10, 0.03


def strategies() -> list[str]:
    done = subprocess.run([*LAUNCHDECK, "strategies", "--json"], capture_output=True, text=True, check=True, cwd=REPO)
    return [entry["name"] for entry in json.loads(done.stdout)]


def measured(strategy: str, model: str, world: int, seq_len: int) -> dict:
    run_dir = OUT / f"{model}-w{world}-s{seq_len}-{strategy}"
    if not (run_dir / "result.json").is_file():
        _, done = timed([*LAUNCHDECK, "launch", strategy, "--cpu", "--nproc", str(world), "--steps", "2",
                               "--model", model, "--seq-len", str(seq_len), "--measure-memory",
                               "--run-dir", str(run_dir)], timeout=3600)
        if done.returncode:
            raise SystemExit(f"{strategy} {model} world {world} failed:\n{done.stderr[-3000:]}")
    return read_result(run_dir)["memory"]


def estimated(strategy: str, model: str, world: int, seq_len: int) -> dict:
    done = subprocess.run([*LAUNCHDECK, "estimate", strategy, "--cpu", "-n", str(world), "--model", model,
                           "--seq-len", str(seq_len), "--json"], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout)


def deepspeed_estimate(strategy: str, model: str, world: int) -> int | None:
    """DeepSpeed's own per-GPU model-state estimate (ZeRO-2 and ZeRO-3 only; one node)."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    from launcher.spec.models import resolve

    shape = resolve(model)
    offload = "offload" in strategy
    if strategy.startswith("zero2"):
        return int(estimate_zero2_model_states_mem_needs(shape.params(), world, 1, offload)[1])
    if strategy.startswith("zero3") or strategy == "zeropp":
        return int(estimate_zero3_model_states_mem_needs(shape.params(), shape.largest_tensor(), world, 1,
                                                         offload, offload)[1])
    return None


def accelerate_estimate(model: str) -> int:
    """`accelerate estimate-memory`'s "Training using Adam (Peak vRAM)" for bf16: the largest of its stages,
    computed by accelerate's own functions from the model built on the meta device."""
    import torch
    from accelerate.commands.estimate import estimate_training_usage
    from accelerate.utils import calculate_maximum_sizes
    from transformers import LlamaForCausalLM

    from launcher.payload.train.model import llama_config

    with torch.device("meta"):
        built = LlamaForCausalLM(llama_config(model))
    total, _ = calculate_maximum_sizes(built)
    return max(estimate_training_usage(total, "bfloat16").values())


def compare(strategy: str, model: str, world: int, seq_len: int) -> dict:
    est, meas = estimated(strategy, model, world, seq_len)["per_rank"], measured(strategy, model, world, seq_len)
    states = lambda d: d["params"] + d["grads"] + d["optimizer"]  # noqa: E731
    return {"strategy": strategy, "model": model, "world": world, "seq_len": seq_len,
            "peak_est": est["peak"], "peak_meas": meas["peak"], "peak_err": est["peak"] / meas["peak"] - 1,
            "states_est": states(est), "states_meas": states(meas), "states_err": states(est) / states(meas) - 1,
            "deepspeed_states": deepspeed_estimate(strategy, model, world), "accelerate": accelerate_estimate(model),
            "estimate": est, "measured": meas}


def mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f}"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    models = os.environ.get("MODELS", "tiny 125m").split()
    worlds = [int(w) for w in os.environ.get("WORLDS", "2 4").split()]
    seq_len = int(os.environ.get("SEQ_LEN", "256"))
    rows = [compare(s, m, w, seq_len) for m in models for w in worlds for s in strategies()]
    (OUT / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    headers = ["model", "world", "strategy", "peak est MiB", "peak meas MiB", "peak err", "states est MiB",
               "states meas MiB", "states err", "DeepSpeed est MiB", "accelerate est MiB"]
    body = [[r["model"], r["world"], r["strategy"], mib(r["peak_est"]), mib(r["peak_meas"]), f"{r['peak_err']:+.1%}",
             mib(r["states_est"]), mib(r["states_meas"]), f"{r['states_err']:+.1%}", mib(r["deepspeed_states"]),
             mib(r["accelerate"])]
            for r in rows]
    report = table(headers, body)
    (OUT / "report.md").write_text(report + "\n")
    print(report)
    misses = [r for r in rows if abs(r["peak_err"]) > PEAK_TOLERANCE or abs(r["states_err"]) > STATES_TOLERANCE]
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
