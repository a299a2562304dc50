"""Byte-level tokens from local text, sampled deterministically by (seed, step, sample of the global batch).

Deterministic sampling is what makes ``--resume`` continue the same loss curve: the batch of step
``s`` is the same whether or not the run was interrupted before it, and the same set of samples at any
data-parallel size that keeps the global batch (a restart on fewer nodes trains on the same data).
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np
import torch

from ... import corpus as accepted

DEFAULT_BYTES = 8 * 1024 * 1024


def load_corpus(path: str | None, limit: int = DEFAULT_BYTES) -> np.ndarray:
    """Bytes of ``path`` (file, folder or JSONL with a ``text`` field) or of Python's stdlib sources."""
    if path is None:
        files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    else:
        if not Path(path).exists():
            raise SystemExit(f"launchdeck: error: --data {path}: no such file or directory")
        files = accepted.files(Path(path))
    chunks, size = [], 0
    for file in files:
        data = _read(file, limit - size)
        chunks.append(data)
        size += len(data)
        if size >= limit:
            break
    corpus = np.frombuffer(b"".join(chunks)[:limit], dtype=np.uint8)
    if corpus.size < accepted.MIN_BYTES:
        raise SystemExit(f"launchdeck: error: --data {path}: only {corpus.size} bytes of text "
                         f"(need >= {accepted.MIN_BYTES})")
    return corpus


def _read(file: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of text from ``file`` (a single huge line or file is never read whole)."""
    wanted = limit if file.suffix != ".jsonl" else 2 * limit  # JSON's quoting and keys take room too
    try:
        with open(file, "rb") as f:
            data = f.read(wanted)
    except OSError as exc:
        raise SystemExit(f"launchdeck: error: --data {file}: cannot read: {exc.strerror}") from None
    return _jsonl_text(file, data, cut=len(data) == wanted) if file.suffix == ".jsonl" else data


def _jsonl_text(file: Path, data: bytes, cut: bool) -> bytes:
    """The ``text`` fields of a JSONL file's lines, blank lines between them (``cut``: the last line was cut
    short by the read limit and is left out)."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    texts = []
    for number, line in enumerate(lines[:-1] if cut else lines, 1):
        if not line.strip():
            continue
        try:
            texts.append(str(json.loads(line)["text"]))
        except (ValueError, KeyError, TypeError):
            raise SystemExit(f"launchdeck: error: --data {file}: line {number} is not a JSON object with a "
                             "'text' field") from None
    return "\n\n".join(texts).encode()


def token_ids(corpus: np.ndarray) -> torch.Tensor:
    """The corpus as int64 token ids (bytes are the vocabulary), on the CPU."""
    return torch.from_numpy(corpus.astype(np.int64))


class Batches:
    """Random windows of ``seq_len + 1`` bytes; inputs and next-token labels.

    Step ``s`` draws ``global_batch`` windows from a generator seeded by (seed, s); data-parallel rank ``r`` of
    ``dp_size`` takes samples ``(micro × dp_size + r) × micro_batch …`` of them in micro step ``micro``."""

    def __init__(self, corpus: np.ndarray | torch.Tensor, seq_len: int, micro_batch: int, seed: int, dp_rank: int,
                 dp_size: int = 1, global_batch: int | None = None):
        self.tokens = corpus if isinstance(corpus, torch.Tensor) else token_ids(corpus)
        self.seq_len, self.micro_batch, self.seed, self.dp_rank = seq_len, micro_batch, seed, dp_rank
        self.dp_size, self.global_batch = dp_size, global_batch or micro_batch * dp_size

    def get(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(hash((self.seed, step)) & (2**63 - 1))
        every = torch.randint(0, len(self.tokens) - self.seq_len - 1, (self.global_batch,), generator=generator)
        first = (micro * self.dp_size + self.dp_rank) * self.micro_batch
        if first + self.micro_batch > self.global_batch:
            raise ValueError(f"micro step {micro} of data-parallel rank {self.dp_rank}/{self.dp_size} is past the "
                             f"global batch of {self.global_batch}")
        starts = every[first:first + self.micro_batch]
        # one gather, no views: a view of the corpus would count the whole corpus as a rank's activations
        windows = self.tokens[starts[:, None] + torch.arange(self.seq_len + 1)]
        return windows[:, :-1], windows[:, 1:]
