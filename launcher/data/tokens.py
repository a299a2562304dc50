"""Prepared token files: ``NAME.bin`` holds the tokens, ``NAME.idx`` where each document starts.

The payload's vocabulary is bytes, so a token is one ``uint8`` and ``NAME.bin`` is the corpus' bytes as
they are: the payload maps it (``numpy.memmap``) and reads only the windows it samples, whatever its
size. ``NAME.idx`` is a 32-byte header (magic, version, token count, document count, all little-endian)
followed by one ``uint64`` start offset per document and the token count (an end sentinel).
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LaunchdeckError

MAGIC = b"LDTOKENS"
VERSION = 1
HEADER = struct.Struct("<8sQQQ")  # magic, version, tokens, documents
Piece = tuple[bool, bytes]  # (this piece starts a document, its bytes): what a text source reads as


class TokenFileError(LaunchdeckError):
    """A prepared token file that is missing its index, or whose index does not match it."""


@dataclass(frozen=True)
class Index:
    """What a token file's index says: how many tokens and documents it holds."""

    tokens: int
    documents: int


@dataclass(frozen=True)
class Prepared:
    """What one ``data prepare`` wrote: its tokens and documents, and the seconds it took."""

    tokens: int
    documents: int
    seconds: float


def index_path(tokens: Path) -> Path:
    return tokens.with_suffix(".idx")


def is_prepared(path: Path) -> bool:
    """A ``.bin`` file: a prepared token file (its index is checked by :func:`read_index`)."""
    return path.suffix == ".bin" and path.is_file()


def read_index(tokens: Path) -> Index:
    """The index of token file ``tokens``, checked against the file's size; TokenFileError when it is not one."""
    idx = index_path(tokens)
    try:
        with open(idx, "rb") as handle:
            magic, version, count, documents = HEADER.unpack(handle.read(HEADER.size))
        size, idx_size = tokens.stat().st_size, idx.stat().st_size
    except (OSError, struct.error) as exc:
        raise TokenFileError(f"{tokens}: no readable index {idx.name} next to it "
                             f"({getattr(exc, 'strerror', None) or 'too short'}); prepare it with "
                             "`launchdeck data prepare`") from None
    if magic != MAGIC or version != VERSION:
        raise TokenFileError(f"{idx}: not a launchdeck token index (version {VERSION})")
    if count != size or idx_size != HEADER.size + 8 * (documents + 1):
        raise TokenFileError(f"{tokens}: {size} bytes, but its index says {count} tokens in {documents} "
                             "documents: prepare it again")
    return Index(count, documents)


def write(pieces: Iterable[Piece], out: Path) -> Prepared:
    """Write ``pieces`` to ``out`` and its index, through partial files renamed at the end (an interrupted
    prepare leaves no token file behind)."""
    began = time.perf_counter()
    partial, partial_idx = (_partial(out, suffix) for suffix in (".partial", ".idx.partial"))
    offsets = array("Q")
    try:
        with open(partial, "wb") as handle:
            for starts, data in pieces:
                if starts:
                    offsets.append(handle.tell())
                handle.write(data)
            count, documents = handle.tell(), len(offsets)
        _write_index(partial_idx, count, offsets)
        os.replace(partial_idx, index_path(out))
        os.replace(partial, out)
    except OSError as exc:
        raise TokenFileError(f"cannot write {out}: {exc.strerror}") from None
    finally:
        for leftover in (partial, partial_idx):
            leftover.unlink(missing_ok=True)
    return Prepared(count, documents, time.perf_counter() - began)


def _partial(out: Path, suffix: str) -> Path:
    """A new, empty, uniquely named file beside ``out`` (two prepares of one name never share one)."""
    try:
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=suffix)
    except OSError as exc:
        raise TokenFileError(f"cannot write {out}: {exc.strerror}") from None
    os.close(fd)
    return Path(name)


def _write_index(path: Path, count: int, offsets: array) -> None:
    documents = len(offsets)
    offsets.append(count)
    if sys.byteorder == "big":  # the index is little-endian everywhere
        offsets.byteswap()
    with open(path, "wb") as handle:
        handle.write(HEADER.pack(MAGIC, VERSION, count, documents))
        offsets.tofile(handle)
