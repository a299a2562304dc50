"""Malformed input of every kind: exit code 2, exactly one line on stderr, no traceback, nothing on stdout.

Each case is data: (id, argv, files to create, a fragment the message must contain). ``{tmp}`` in argv
is the case's temporary directory; files are relative to it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from launcher.cli import main

Z = "description: user strategy\nextends: zero1\n"
CASES = [
    # --- bad YAML ---
    ("yaml-unclosed", ["show", "{tmp}/s.yaml"], {"s.yaml": "description: x\nzero: {stage: 1\n"},
     "s.yaml:3:1: invalid YAML"),
    ("yaml-tab", ["show", "{tmp}/s.yaml"], {"s.yaml": "zero:\n\tstage: 1\n"}, "invalid YAML"),
    ("yaml-duplicate-key", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "zero: {stage: 1, stage: 2}\n"},
     "duplicate key 'stage'"),
    ("yaml-list-top", ["show", "{tmp}/s.yaml"], {"s.yaml": "- zero1\n"}, "expected a mapping at the top level"),
    ("yaml-scalar-top", ["show", "{tmp}/s.yaml"], {"s.yaml": "zero3\n"}, "expected a mapping at the top level"),
    ("yaml-empty", ["show", "{tmp}/s.yaml"], {"s.yaml": "# nothing\n"}, "empty strategy file"),
    ("yaml-binary", ["show", "{tmp}/s.yaml"], {"s.yaml": b"\xff\xfe\x00zero"}, "cannot read"),
    # --- unknown keys ---
    ("unknown-top-key", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "zeroo: {stage: 1}\n"}, "zeroo: unknown key"),
    ("unknown-nested-key", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "zero: {overlap_com: true}\n"},
     "zero.overlap_com: unknown key"),
    ("unknown-deep-key", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "zero: {offload_param: {devise: cpu}}\n"},
     "zero.offload_param.devise: unknown key"),
    ("name-key", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "name: other\n"}, "name: not allowed"),
    ("foreign-section", ["show", "{tmp}/s.yaml"], {"s.yaml": "description: x\nextends: ddp\nhorovod: {}\n"},
     "horovod: section not used by engine 'ddp'"),
    # --- wrong types / values ---
    ("stage-word", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "zero: {stage: three}\n"}, "zero.stage: expected one of"),
    ("micro-float", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "training: {micro_batch: 1.5}\n"},
     "training.micro_batch: expected an integer"),
    ("precision-fp8", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "training: {precision: fp8}\n"},
     "training.precision: expected one of bf16, fp16, fp32"),
    ("betas-three", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "optimizer: {betas: [0.9, 0.95, 0.99]}\n"},
     "optimizer.betas: expected a list of 2 values"),
    ("bool-string", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "zero: {overlap_comm: 'yes'}\n"},
     "zero.overlap_comm: expected true or false"),
    ("engine-unknown", ["show", "{tmp}/s.yaml"], {"s.yaml": "description: x\nengine: megatron\n"},
     "engine: expected one of ddp, deepspeed, fsdp2, horovod"),
    ("description-missing", ["show", "{tmp}/s.yaml"], {"s.yaml": "engine: ddp\n"}, "description: required"),
    ("lr-negative", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "optimizer: {lr: -1}\n"}, "optimizer.lr: must be > 0"),
    ("section-as-scalar", ["show", "{tmp}/s.yaml"], {"s.yaml": Z + "training: fast\n"},
     "training: expected a mapping"),
    # --- extends ---
    ("extends-unknown", ["show", "{tmp}/s.yaml"], {"s.yaml": "description: x\nextends: zero9\n"},
     "unknown strategy 'zero9' (known: autotp, ddp"),
    ("extends-number", ["show", "{tmp}/s.yaml"], {"s.yaml": "description: x\nextends: 3\n"},
     "extends: expected a strategy name or file path"),
    ("extends-missing-file", ["show", "{tmp}/s.yaml"], {"s.yaml": "description: x\nextends: ./base.yaml\n"},
     "strategy file not found"),
    ("extends-cycle", ["show", "{tmp}/a.yaml"], {"a.yaml": "description: a\nextends: ./b.yaml\n",
                                                 "b.yaml": "description: b\nextends: ./a.yaml\n"}, "extends cycle"),
    # --- bad --set ---
    ("set-no-equals", ["render", "zero1", "-n", "2", "--set", "zero.stage"], {}, "expected dotted.key=value"),
    ("set-bad-key", ["render", "zero1", "-n", "2", "--set", "zero..stage=1"], {}, "expected dotted.key=value"),
    ("set-empty-key", ["render", "zero1", "-n", "2", "--set", "=3"], {}, "expected dotted.key=value"),
    ("set-unknown-key", ["render", "zero1", "-n", "2", "--set", "zero.stag=1"], {}, "did you mean 'stage'"),
    ("set-wrong-type", ["render", "zero1", "-n", "2", "--set", "training.micro_batch=big"], {},
     "--set training.micro_batch=big: training.micro_batch: expected an integer"),
    ("set-below-scalar", ["render", "zero1", "-n", "2", "--set", "training.micro_batch.x=1"], {},
     "training.micro_batch is a int, not a section"),
    ("set-bad-yaml", ["render", "zero1", "-n", "2", "--set", "optimizer.betas=[0.9,"], {}, "not valid YAML"),
    ("set-name", ["render", "zero1", "-n", "2", "--set", "name=x"], {}, "'name' cannot be overridden"),
    ("set-foreign-section", ["render", "zero1", "-n", "2", "--set", "ddp.static_graph=true"], {},
     "ddp: section not used by engine 'deepspeed'"),
    # --- cross-field rules ---
    ("offload-param-stage2", ["render", "zero2", "-n", "2", "--set", "zero.offload_param.device=cpu"], {},
     "zero.offload_param.device: needs ZeRO stage 3"),
    ("nvme-no-path", ["render", "zero3", "-n", "2", "--set", "zero.offload_param.device=nvme"], {},
     "zero.offload_param.nvme_path: required"),
    ("path-no-nvme", ["render", "zero3", "-n", "2", "--set", "zero.offload_param.nvme_path=/x"], {},
     "only used with device nvme"),
    ("qwz-stage2", ["render", "zero2", "-n", "2", "--set", "zero.quantized_weights=true"], {},
     "zero.quantized_weights: needs ZeRO stage 3"),
    ("pipeline-zero2", ["render", "pipeline", "-n", "2", "--set", "zero.stage=2"], {},
     "DeepSpeed refuses pipeline parallelism with ZeRO stage 2"),
    ("pipeline-partition", ["render", "pipeline", "-n", "2", "--set", "pipeline.partition_method=best"], {},
     "expected parameters, uniform or type:REGEX"),
    ("pipeline-regex", ["render", "pipeline", "-n", "2", "--set", "pipeline.partition_method=type:(["], {},
     "bad regular expression"),
    ("linear-min-lr", ["render", "zero1", "-n", "2", "--set", "scheduler.type=linear"], {},
     "set scheduler.min_lr_ratio=0"),
    ("adasum-predivide", ["render", "horovod", "-n", "2", "--set", "horovod.op=adasum",
                          "--set", "horovod.gradient_predivide_factor=2"], {}, "only applies to op average"),
    # --- impossible batch arithmetic ---
    ("global-not-divisible", ["render", "zero1", "-n", "3", "--set", "training.global_batch=16"], {},
     "global_batch 16 is not divisible by micro_batch 4 × data-parallel size 3 = 12"),
    ("global-vs-accum", ["render", "zero1", "-n", "2", "--set", "training.global_batch=16", "--set",
                         "training.grad_accum=4"], {}, "16 != micro_batch 4 × grad_accum 4 × data-parallel size 2"),
    ("global-below-micro", ["render", "zero1", "-n", "2", "--set", "training.global_batch=2"], {},
     "smaller than training.micro_batch 4"),
    ("pipeline-world", ["render", "pipeline", "-n", "6", "--set", "pipeline.stages=4"], {},
     "world size 6 is not divisible by pipeline.stages 4 (6 % 4 = 2)"),
    ("pipeline-too-few", ["render", "pipeline", "-n", "1"], {}, "needs at least 2 ranks"),
    ("hpz-not-dividing", ["render", "zeropp", "-n", "12", "--gpus-per-node", "8"], {},
     "zero.hpz_partition_size 8 does not divide world size 12"),
    # --- raw deepspeed keys ---
    ("ds-misspelled", ["render", "zero1", "-n", "2", "--set", "deepspeed.gradient_clip=1"], {},
     "did you mean 'gradient_clipping'"),
    ("ds-solved-key", ["render", "zero1", "-n", "2", "--set", "deepspeed.train_batch_size=8"], {},
     "solved by launchdeck"),
    # --- which strategy ---
    ("unknown-strategy", ["render", "zero4", "-n", "2"], {}, "unknown strategy 'zero4' (known: autotp, ddp"),
    ("missing-file", ["render", "{tmp}/nope.yaml", "-n", "2"], {}, "strategy file not found"),
    ("directory", ["show", "{tmp}/dir/"], {"dir/keep.yaml": Z}, "strategy file not found"),
    # --- command line ---
    ("world-zero", ["render", "zero1", "-n", "0"], {}, "0 is not in the range x>=1"),
    ("world-missing", ["render", "zero1"], {}, "Missing option '--world-size'"),
    ("precision-flag", ["render", "zero1", "-n", "2", "--precision", "fp8"], {}, "'fp8' is not one of"),
    ("micro-zero", ["render", "zero1", "-n", "2", "--micro-batch", "0"], {}, "0 is not in the range"),
    ("hf-ddp", ["render", "ddp", "-n", "2", "--hf"], {}, "--hf renders DeepSpeed configs"),
    ("hf-pipeline", ["render", "pipeline", "-n", "2", "--hf"], {}, "does not run DeepSpeed pipeline"),
    ("output-missing-dir", ["render", "zero1", "-n", "2", "-o", "{tmp}/no/such/dir/x.json"], {}, "cannot write"),
    ("stall-timeout-tiny", ["launch", "ddp", "--cpu", "--stall-timeout", "0.5", "--dry-run"], {},
     "0.5 s is shorter than progress can be seen"),
    ("stall-timeout-negative", ["launch", "ddp", "--cpu", "--stall-timeout", "-1", "--dry-run"], {},
     "-1.0 is not in the range x>=0"),
    ("stall-at-word", ["launch", "ddp", "--cpu", "--stall-at", "one:ten", "--dry-run"], {},
     "--stall-at 'one:ten': expected RANK:STEP"),
    ("stall-at-rank", ["launch", "ddp", "--cpu", "--nproc", "2", "--stall-at", "2:5", "--dry-run"], {},
     "RANK below the world size 2"),
    ("crash-at-step-zero", ["launch", "ddp", "--cpu", "--crash-at", "0:0", "--dry-run"], {},
     "--crash-at '0:0': expected RANK:STEP"),
    ("crash-at-save-word", ["launch", "ddp", "--cpu", "--crash-at", "1:5:load", "--dry-run"], {},
     "--crash-at '1:5:load': expected RANK:STEP[:save]"),
    ("max-restarts-no-save", ["launch", "ddp", "--cpu", "--max-restarts", "2", "--dry-run"], {},
     "--max-restarts needs --save-every K"),
    ("max-restarts-negative", ["launch", "ddp", "--cpu", "--max-restarts", "-1", "--save-every", "5", "--dry-run"],
     {}, "-1 is not in the range x>=0"),
    ("min-nodes-zero", ["launch", "ddp", "--cpu", "--min-nodes", "0", "--dry-run"], {}, "0 is not in the range x>=1"),
    ("min-nodes-no-restarts", ["launch", "ddp", "--cpu", "--hostfile", "{tmp}/h", "--min-nodes", "1", "--dry-run"],
     {"h": "a slots=1\nb slots=1\n"}, "--min-nodes says where a restart may run; add --max-restarts N"),
    ("min-nodes-here", ["launch", "ddp", "--cpu", "--min-nodes", "1", "--max-restarts", "1", "--save-every", "5",
                        "--dry-run"], {}, "it needs --hostfile (Slurm places a job"),
    ("min-nodes-batch", ["launch", "ddp", "--cpu", "--hostfile", "{tmp}/h", "--min-nodes", "2", "--max-restarts", "1",
                         "--save-every", "5", "--dry-run"], {"h": "a slots=2\nb slots=2\nc slots=2\n"},
     "--min-nodes 2: at 2 node(s) the global batch 24 cannot be kept"),
    ("min-nodes-include", ["launch", "ddp", "--cpu", "--hostfile", "{tmp}/h", "--include", "a", "--min-nodes", "1",
                           "--max-restarts", "1", "--save-every", "5", "--dry-run"], {"h": "a slots=1\nb slots=1\n"},
     "give the hosts to avoid with --exclude instead of --include"),
    ("min-nodes-above-hostfile", ["launch", "ddp", "--cpu", "--hostfile", "{tmp}/h", "--min-nodes", "3",
                                  "--max-restarts", "1", "--save-every", "5", "--dry-run"],
     {"h": "a slots=1\nb slots=1\n"}, "--min-nodes 3 but the job has 2 node(s)"),
    ("hostfile-since-not-a-run", ["hostfile", "check", "{tmp}/h", "--since", "{tmp}/d"], {"h": "a slots=1\n",
                                                                                        "d/x": "x"},
     "d: no readable plan.json there (a launchdeck run directory?)"),
    ("hostfile-superscript-slots", ["hostfile", "check", "{tmp}/h"], {"h": "a slots=²\n"},  # found by fuzzing
     "slots must be a whole number, got '²'"),
    ("tune-superscript-batch", ["tune", "--strategies", "ddp", "--micro-batch", "1,²"], {},
     "--micro-batch '1,²': 'auto' or positive integers"),
    # --- data prepare, and a token file as --data ---
    ("prepare-output-exists", ["data", "prepare", "{tmp}/a.txt", "-o", "{tmp}/t.bin"],
     {"a.txt": "x" * 5000, "t.bin": "mine"}, "t.bin exists; remove it or choose another name"),
    ("prepare-output-not-bin", ["data", "prepare", "{tmp}/a.txt", "-o", "{tmp}/t.tokens"], {"a.txt": "x" * 5000},
     "a token file's name ends in .bin"),
    ("prepare-bad-jsonl", ["data", "prepare", "{tmp}/a.jsonl", "-o", "{tmp}/t.bin"],
     {"a.jsonl": '{"text": "fine"}\n[1, 2]\n'}, "a.jsonl: line 2 is not a JSON object with a 'text' string"),
    ("prepare-too-short", ["data", "prepare", "{tmp}/a.txt", "{tmp}/b.txt", "-o", "{tmp}/t.bin"],
     {"a.txt": "x" * 3000, "b.txt": ""}, "only 3000 bytes of text (need >= 4096 to train on); nothing written"),
    ("prepare-no-text", ["data", "prepare", "{tmp}/d", "-o", "{tmp}/t.bin"], {"d/x.bin": "x"}, "d: no text files"),
    ("data-bin-without-index", ["launch", "ddp", "--cpu", "--data", "{tmp}/t.bin", "--dry-run"],
     {"t.bin": "x" * 5000}, "no readable index t.idx next to it"),
    ("data-bin-index-mismatch", ["launch", "ddp", "--cpu", "--data", "{tmp}/t.bin", "--dry-run"],
     {"t.bin": "x" * 5000, "t.idx": b"LDTOKENS" + bytes([1] + [0] * 7) + bytes([0x88, 0x13] + [0] * 6)
      + bytes([2] + [0] * 7) + bytes(8)}, "5000 bytes, but its index says 5000 tokens in 2 documents"),
    ("compression-on-zero2", ["render", "zero2", "-n", "2", "--set", "compression.sparsity=0.5"], {},
     "compression"),
    ("fsdp2-fp16", ["render", "fsdp2", "-n", "2", "--set", "training.precision=fp16"], {},
     "fsdp2 trains in bf16 or fp32"),
    ("fsdp2-tp-heads", ["launch", "fsdp2-tp", "--cpu", "--nproc", "4", "--set", "fsdp.tp=4", "--dry-run"], {},
     "fsdp.tp 4 does not divide model tiny's 6 attention heads"),
    ("autotp-world", ["render", "autotp", "-n", "3"], {}, "not divisible by tensor_parallel.autotp_size"),
    ("unknown-command", ["rendr"], {}, "No such command 'rendr'"),
    ("unknown-option", ["render", "zero1", "-n", "2", "--wrld"], {}, "Did you mean '--world-size'"),
]


def _materialise(tmp_path, argv, files):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return [a.replace("{tmp}", str(tmp_path)) for a in argv]


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("argv, files, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(argv, files, fragment, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(_materialise(tmp_path, argv, files))
    out, err = capsys.readouterr()
    assert info.value.code == 2
    assert out == ""
    assert err.count("\n") == 1 and "error: " in err, err
    assert fragment in err


def test_bad_env_value_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAUNCHDECK_MICRO_BATCH", "lots")
    with pytest.raises(SystemExit) as info:
        main(["render", "zero1", "-n", "2"])
    assert info.value.code == 2 and "'lots' is not a valid integer" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["yaml-unclosed", "set-wrong-type", "global-not-divisible", "unknown-strategy"])
def test_through_the_real_console_script(case, tmp_path):
    _, argv, files, fragment = next(c for c in CASES if c[0] == case)
    done = subprocess.run([sys.executable, "-m", "launcher", *_materialise(tmp_path, argv, files)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and fragment in done.stderr and "Traceback" not in done.stderr
