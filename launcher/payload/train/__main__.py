"""``python -m launcher.payload.train``: the payload every rank runs (normally started by ``launchdeck launch``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from ... import entrypoints
from ...node import progress

STARTED = time.perf_counter()


def _count(least: int):
    """An argparse type: a whole number ≥ ``least``."""
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}")
        return int(text)
    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    from ...spec import engines
    from .model import PRESETS

    p = argparse.ArgumentParser(prog=f"python -m {entrypoints.PAYLOAD}", description=__doc__)
    p.add_argument("--engine", required=True, choices=engines.names())
    p.add_argument("--config", required=True, help="the rendered config (DeepSpeed JSON or settings JSON)")
    p.add_argument("--strategy", default="custom", help="name recorded in result.json")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--log-interval", type=int, default=10)
    p.add_argument("--model", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--seq-len", type=int, help="default: the preset's")
    p.add_argument("--data", help="a text file, a folder of text, or JSONL with a 'text' field")
    p.add_argument("--data-workers", type=_count(0), default=1, help="DataLoader processes per rank building the "
                   "next micro batches while the rank computes (0: on the training thread)")
    p.add_argument("--prefetch", type=_count(1), default=2, help="micro batches each data worker keeps ready")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--cpu", action="store_true", help="train on CPU with gloo even if GPUs are visible")
    p.add_argument("--run-dir", help="rank 0 writes result.json here")
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every K steps (0: only at the end)")
    p.add_argument("--ckpt-dir", help="where checkpoints go (default: RUN_DIR/checkpoints)")
    p.add_argument("--resume-from", help="a checkpoint root (or run directory) to continue from")
    p.add_argument("--auto-resume", action="store_true", help="continue from this run's own latest checkpoint "
                   "when it has one (a restart), before --resume-from")
    p.add_argument("--measure-memory", action="store_true",
                   help="measure the second step's memory per rank (MemTracker) into result.json 'memory'")
    p.add_argument("--crash-at", metavar="RANK:STEP[:save]",
                   help="fault drill: RANK exits with code 17 before STEP (:save: while saving STEP's checkpoint)")
    p.add_argument("--stall-at", metavar="RANK:STEP", help="fault drill: RANK blocks (alive, not stopped) before STEP")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    progress.from_env()  # the record exists before any slow import: start-up is not judged by silence
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    from ...errors import CHECKPOINT_EXIT, OUT_OF_MEMORY_EXIT
    from .checkpoint import SaveFailed
    from .loop import train

    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch < 2.5: CUDA's name
    try:
        return train(args, STARTED)
    except (out_of_memory, MemoryError) as exc:  # a verdict a tuner reads from the exit code
        print(f"launchdeck: out of memory: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr, flush=True)
        return OUT_OF_MEMORY_EXIT
    except SaveFailed as exc:
        with contextlib.suppress(OSError):  # the disk that is full may hold this rank's log too
            print(f"launchdeck: {exc}", file=sys.stderr, flush=True)
        return CHECKPOINT_EXIT


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and the process group is destroyed: skip interpreter finalization, whose
    # C++ static destructors are where torch's distributed runtime aborted (see comm.TorchComm.shutdown).
    os._exit(code)
