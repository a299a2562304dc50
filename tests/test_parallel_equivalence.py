"""Sharded and tensor-parallel strategies train the same model as DDP: same seed, same batches, fp32, the loss
curves agree within float noise (DDP is the oracle). FSDP2's sharded checkpoints resume at other sizes."""

from __future__ import annotations

import shutil

import pytest

from .launching import launchdeck, result

pytestmark = pytest.mark.slow
STEPS = 30
TOLERANCE = 1e-4  # fp32 loss, reduction order only (measured: ~5e-7)
SHORT = ("--cpu", "--seq-len", "64", "--set", "training.precision=fp32", "--set", "training.log_interval=10")


def _losses(tmp_path, name: str, nproc: int, *extra: str, steps: int = STEPS) -> list[float]:
    run_dir = tmp_path / f"{name}-{nproc}-{len(list(tmp_path.iterdir()))}"
    done = launchdeck("launch", name, "--nproc", str(nproc), "--steps", str(steps), "--run-dir", str(run_dir),
                      *SHORT, *extra, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return result(run_dir)["losses"]


def _max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name, nproc, ddp_nproc", [
    ("fsdp2", 2, 2),  # dp 2: every rank's micro batch is DDP's rank's
    ("fsdp2-tp", 2, 1),  # dp 1 × tp 2: both ranks see the whole batch, as one DDP rank does
    ("autotp", 2, 1),  # DeepSpeed AutoTP × ZeRO-1, tp 2: likewise
])
def test_the_loss_curve_is_ddps(name, nproc, ddp_nproc, tmp_path):
    ddp = _losses(tmp_path, "ddp", ddp_nproc)
    other = _losses(tmp_path, name, nproc)
    print(f"{name} at world {nproc} vs ddp at {ddp_nproc}, {STEPS} steps fp32: max |loss diff| "
          f"{_max_diff(ddp, other):.2e}")
    assert _max_diff(ddp, other) < TOLERANCE


@pytest.mark.parametrize("world", [1, 4])
def test_an_fsdp2_checkpoint_from_world_2_continues_at_another_size(world, tmp_path):
    """Saved at world 2 after step 5, resumed at ``world`` with the same global batch: steps 6-10 are the
    steps an uninterrupted run at ``world`` takes (the same samples; DCP reshards the state)."""
    keep_batch = ("--set", "training.global_batch=8", "--set", "training.micro_batch=2")
    saved = tmp_path / "saved"
    done = launchdeck("launch", "fsdp2", "--nproc", "2", "--steps", "10", "--save-every", "5", "--run-dir",
                      str(saved), *SHORT, *keep_batch, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "at-step-5"
    shutil.copytree(saved / "checkpoints" / "step-000005", root / "step-000005")
    (root / "latest").write_text("step-000005\n")
    resumed_dir = tmp_path / "resumed"
    done = launchdeck("launch", "fsdp2", "--nproc", str(world), "--steps", "10", "--resume", str(root),
                      "--run-dir", str(resumed_dir), *SHORT, *keep_batch, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = result(resumed_dir)
    assert resumed["start_step"] == 5 and len(resumed["losses"]) == 5
    assert f"saved at world size 2, now {world}" in (resumed_dir / "logs" / "rank0.log").read_text()
    straight = _losses(tmp_path, "fsdp2", world, *keep_batch, steps=10)
    print(f"fsdp2 saved at world 2, resumed at {world}: losses {[round(x, 4) for x in resumed['losses']]}, "
          f"max |diff| vs uninterrupted at {world}: {_max_diff(straight[5:], resumed['losses']):.2e}")
    assert _max_diff(straight[5:], resumed["losses"]) < TOLERANCE
