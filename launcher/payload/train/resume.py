"""What a checkpoint keeps besides the engine's own state, and how it is loaded at another size.

Each complete checkpoint holds ``meta.json`` (the step, world and data-parallel size it was saved at) and
``rng/rank<R>.pt`` (each rank's random state), so a restart continues exactly where an uninterrupted run
would be. A DeepSpeed ZeRO checkpoint saved at another data-parallel size is converted once by DeepSpeed's
own ``ds_to_universal`` (into ``universal/`` next to it, atomically) and loaded with ``load_universal``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ...files import write_atomic

META = "meta.json"
UNIVERSAL = "universal"
UNIVERSAL_CONVERTER = "deepspeed.checkpoint.ds_to_universal"


@dataclass(frozen=True)
class Saved:
    """The shape a checkpoint was saved at."""

    step: int
    world_size: int
    data_parallel_size: int


def write_meta(directory: Path, saved: Saved) -> None:
    write_atomic(directory / META, json.dumps(vars(saved)) + "\n")


def read_meta(directory: Path) -> Saved | None:
    """The checkpoint's shape; None for a checkpoint written before launchdeck kept one."""
    path = directory / META
    return Saved(**json.loads(path.read_text())) if path.is_file() else None


def save_rng(directory: Path, rank: int) -> None:
    """This rank's random state (CPU, and its GPU where it has one)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    (directory / "rng").mkdir(exist_ok=True)
    torch.save(state, directory / "rng" / f"rank{rank}.pt")


def restore_rng(directory: Path, rank: int) -> bool:
    """Put this rank's saved random state back; False when the checkpoint has none for it."""
    path = directory / "rng" / f"rank{rank}.pt"
    if not path.is_file():
        return False
    state = torch.load(path, weights_only=True)
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    return True


def to_universal(checkpoint: Path, tag: str) -> Path:
    """DeepSpeed's universal form of ``checkpoint/tag``, made once (by one rank) into ``checkpoint/universal``."""
    final = checkpoint / UNIVERSAL
    if final.is_dir():
        return final
    partial = checkpoint / f".partial-{UNIVERSAL}"
    shutil.rmtree(partial, ignore_errors=True)
    workers = str(max(1, min(4, os.cpu_count() or 1)))
    argv = [sys.executable, "-m", UNIVERSAL_CONVERTER, "--input_folder", str(checkpoint / tag), "--output_folder",
            str(partial), "--num_extract_workers", workers, "--num_merge_workers", workers, "--inject_missing_state"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise SystemExit(f"launchdeck: error: converting {checkpoint} to a universal checkpoint failed: {last}")
    os.replace(partial, final)
    return final
