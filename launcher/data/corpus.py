"""What the payload accepts as ``--data`` (text, or a token file from ``data prepare``), checked where it is
read and, before anything starts, where a launch is planned."""

from __future__ import annotations

import os
from pathlib import Path

from . import tokens

TEXT_SUFFIXES = {".txt", ".md", ".py", ".rst", ".json", ".jsonl", ".c", ".h", ".yaml", ".toml"}
MIN_BYTES = 4096  # a corpus smaller than this cannot fill a batch of the presets' sequences


def files(root: Path) -> list[Path]:
    """The text files ``root`` stands for: itself, or the text files below it in name order."""
    return [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in TEXT_SUFFIXES)


def problem(path: str) -> str | None:
    """Why ``path`` cannot be the payload's text (one line), or None. Sizes only: the content is the payload's
    to read (a JSONL line that is not JSON is found there, in one line too)."""
    root = Path(path)
    if not root.exists():
        return f"--data {path}: no such file or directory"
    if tokens.is_prepared(root):
        return _token_file_problem(root)
    found = files(root)
    unreadable = next((f for f in found if not os.access(f, os.R_OK)), None)
    if unreadable is not None:
        return f"--data {path}: cannot read {unreadable}"
    size = sum(f.stat().st_size for f in found)
    if size < MIN_BYTES:
        return f"--data {path}: only {size} bytes of text (need >= {MIN_BYTES})"
    return None


def _token_file_problem(path: Path) -> str | None:
    if not os.access(path, os.R_OK):
        return f"--data {path}: cannot read it"
    try:
        count = tokens.read_index(path).tokens
    except tokens.TokenFileError as exc:
        return f"--data {exc}"
    return f"--data {path}: only {count} tokens (need >= {MIN_BYTES})" if count < MIN_BYTES else None
