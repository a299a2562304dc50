"""Byte-level tokens from local text, sampled deterministically by (seed, step, micro batch, rank).

Deterministic sampling is what makes ``--resume`` continue the same loss curve: the batch of step
``s`` is the same whether or not the run was interrupted before it.
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np
import torch

DEFAULT_BYTES = 8 * 1024 * 1024
TEXT_SUFFIXES = {".txt", ".md", ".py", ".rst", ".json", ".jsonl", ".c", ".h", ".yaml", ".toml"}


def load_corpus(path: str | None, limit: int = DEFAULT_BYTES) -> np.ndarray:
    """Bytes of ``path`` (file, folder or JSONL with a ``text`` field) or of Python's stdlib sources."""
    if path is None:
        files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    else:
        root = Path(path)
        if not root.exists():
            raise SystemExit(f"launchdeck: error: --data {path}: no such file or directory")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in TEXT_SUFFIXES)
    chunks, size = [], 0
    for file in files:
        data = _read(file)
        chunks.append(data)
        size += len(data)
        if size >= limit:
            break
    corpus = np.frombuffer(b"".join(chunks)[:limit], dtype=np.uint8)
    if corpus.size < 4096:
        raise SystemExit(f"launchdeck: error: --data {path}: only {corpus.size} bytes of text (need >= 4096)")
    return corpus


def _read(file: Path) -> bytes:
    if file.suffix == ".jsonl":
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n\n".join(json.loads(line)["text"] for line in lines if line.strip()).encode()
    return file.read_bytes()


def token_ids(corpus: np.ndarray) -> torch.Tensor:
    """The corpus as int64 token ids (bytes are the vocabulary), on the CPU."""
    return torch.from_numpy(corpus.astype(np.int64))


class Batches:
    """Random windows of ``seq_len + 1`` bytes; inputs and next-token labels."""

    def __init__(self, corpus: np.ndarray | torch.Tensor, seq_len: int, micro_batch: int, seed: int, dp_rank: int):
        self.tokens = corpus if isinstance(corpus, torch.Tensor) else token_ids(corpus)
        self.seq_len, self.micro_batch, self.seed, self.dp_rank = seq_len, micro_batch, seed, dp_rank

    def get(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(hash((self.seed, step, micro, self.dp_rank)) & (2**63 - 1))
        starts = torch.randint(0, len(self.tokens) - self.seq_len - 1, (self.micro_batch,), generator=generator)
        # one gather, no views: a view of the corpus would count the whole corpus as a rank's activations
        windows = self.tokens[starts[:, None] + torch.arange(self.seq_len + 1)]
        return windows[:, :-1], windows[:, 1:]
