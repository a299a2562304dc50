"""Text sources as a stream of documents: a text file, a folder of text files, JSONL with a ``text`` field.

Files are read in chunks and JSONL line by line, so no source is ever held whole in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import LaunchdeckError
from . import corpus
from .tokens import Piece

CHUNK = 8 * 2**20  # bytes read from a text file at a time
MAX_LINE = 256 * 2**20  # a JSONL line longer than this is refused (one document, not a corpus on one line)
SEPARATOR = b"\n\n"  # between the texts of a JSONL file


class SourceError(LaunchdeckError):
    """A text source that cannot be read, or a JSONL line that is not a JSON object with a ``text`` field."""


def pieces(path: Path, max_line: int = MAX_LINE) -> Iterator[Piece]:
    """Every document of ``path`` in corpus order (files in name order), as pieces of bytes."""
    for file in corpus.files(path):
        yield from (_jsonl(file, max_line) if file.suffix == ".jsonl" else _text(file))


def _text(file: Path) -> Iterator[Piece]:
    with _open(file) as handle:
        first = True
        while chunk := _read(file, handle.read, CHUNK):
            yield first, chunk
            first = False


def _jsonl(file: Path, max_line: int) -> Iterator[Piece]:
    with _open(file) as handle:
        first, number = True, 0
        while line := _read(file, handle.readline, max_line + 2):  # room for the line's own \r\n
            number += 1
            if len(line.rstrip(b"\r\n")) > max_line:
                raise SourceError(f"{file}: line {number} is longer than {max_line // 2**20} MiB")
            if not line.strip():
                continue
            if not first:
                yield False, SEPARATOR
            yield True, _text_field(file, number, line)
            first = False


def _text_field(file: Path, number: int, line: bytes) -> bytes:
    try:
        text = json.loads(line.decode("utf-8-sig", errors="replace"))["text"]
    except (ValueError, KeyError, TypeError):
        text = None
    if not isinstance(text, str):
        raise SourceError(f"{file}: line {number} is not a JSON object with a 'text' string")
    return text.encode("utf-8", errors="surrogatepass")


def _open(file: Path) -> BinaryIO:
    try:
        return open(file, "rb")
    except OSError as exc:
        raise SourceError(f"{file}: cannot read: {exc.strerror}") from None


def _read(file: Path, read, size: int) -> bytes:
    try:
        return read(size)
    except OSError as exc:
        raise SourceError(f"{file}: cannot read: {exc.strerror}") from None
