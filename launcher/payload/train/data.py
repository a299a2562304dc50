"""Byte-level tokens from local text, sampled deterministically by (seed, step, sample of the global batch).

Deterministic sampling is what makes ``--resume`` continue the same loss curve: the batch of step
``s`` is the same whether or not the run was interrupted before it, and the same set of samples at any
data-parallel size that keeps the global batch (a restart on fewer nodes trains on the same data).
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import torch

from ...data import corpus as accepted
from ...data import sources, tokens
from ...errors import LaunchdeckError

DEFAULT_BYTES = 8 * 1024 * 1024  # of text read into memory; a prepared token file is mapped whole


def load_corpus(path: str | None, limit: int = DEFAULT_BYTES) -> np.ndarray:
    """The token ids (bytes) of ``path``: a token file from ``data prepare``, mapped; else at most ``limit``
    bytes of a text file, a folder of them or JSONL with a ``text`` field (default: Python's stdlib sources)."""
    if path is not None and not Path(path).exists():
        raise SystemExit(f"launchdeck: error: --data {path}: no such file or directory")
    try:
        found = _mapped(Path(path)) if path and tokens.is_prepared(Path(path)) else _text(path, limit)
    except LaunchdeckError as exc:
        raise SystemExit(f"launchdeck: error: --data {exc}") from None
    if found.size < accepted.MIN_BYTES:
        raise SystemExit(f"launchdeck: error: --data {path}: only {found.size} bytes of text "
                         f"(need >= {accepted.MIN_BYTES})")
    return found


def _mapped(path: Path) -> np.ndarray:
    count = tokens.read_index(path).tokens
    try:
        return np.memmap(path, dtype=np.uint8, mode="r", shape=(count,)) if count else np.zeros(0, np.uint8)
    except OSError as exc:
        raise SystemExit(f"launchdeck: error: --data {path}: cannot read: {exc.strerror}") from None


def _text(path: str | None, limit: int) -> np.ndarray:
    """The first ``limit`` bytes of the text."""
    roots = [Path(path)] if path else sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    chunks, size = [], 0
    for _, piece in (p for root in roots for p in sources.pieces(root, max_line=2 * limit)):
        chunks.append(piece[:limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return np.frombuffer(b"".join(chunks), dtype=np.uint8)


def token_ids(corpus: np.ndarray) -> torch.Tensor:
    """The corpus as int64 token ids (bytes are the vocabulary), on the CPU."""
    return torch.from_numpy(corpus.astype(np.int64))


class Batches:
    """Random windows of ``seq_len + 1`` bytes; inputs and next-token labels.

    Step ``s`` draws ``global_batch`` windows from a generator seeded by (seed, s); data-parallel rank ``r`` of
    ``dp_size`` takes samples ``(micro × dp_size + r) × micro_batch …`` of them in micro step ``micro``."""

    def __init__(self, corpus: np.ndarray, seq_len: int, micro_batch: int, seed: int, dp_rank: int,
                 dp_size: int = 1, global_batch: int | None = None):
        self.tokens = corpus  # bytes in memory, or a mapped token file read window by window
        self.seq_len, self.micro_batch, self.seed, self.dp_rank = seq_len, micro_batch, seed, dp_rank
        self.dp_size, self.global_batch = dp_size, global_batch or micro_batch * dp_size

    def get(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(hash((self.seed, step)) & (2**63 - 1))
        every = torch.randint(0, len(self.tokens) - self.seq_len - 1, (self.global_batch,), generator=generator)
        first = (micro * self.dp_size + self.dp_rank) * self.micro_batch
        if first + self.micro_batch > self.global_batch:
            raise ValueError(f"micro step {micro} of data-parallel rank {self.dp_rank}/{self.dp_size} is past the "
                             f"global batch of {self.global_batch}")
        starts = every[first:first + self.micro_batch].numpy()
        # one gather into a new array: a view of the corpus would count the whole corpus as a rank's activations
        windows = token_ids(self.tokens[starts[:, None] + np.arange(self.seq_len + 1)])
        return windows[:, :-1], windows[:, 1:]

    @property
    def accum(self) -> int:
        """Micro steps per optimizer step: the global batch over this rank's share of one micro step."""
        return self.global_batch // (self.micro_batch * self.dp_size)
