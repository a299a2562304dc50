"""``launchdeck data …``: prepare training text once as a memory-mapped token file."""

from __future__ import annotations

import itertools
from pathlib import Path

import click

from ..data import corpus, sources, tokens
from ..errors import LaunchdeckError


@click.group()
def data() -> None:
    """Prepare training text.

    \b
    Examples:
      launchdeck data prepare books/ wiki.jsonl -o runs/data/tokens.bin
      launchdeck launch zero3 --data runs/data/tokens.bin --data-workers 2
    """


@data.command()
@click.argument("texts", nargs=-1, required=True, type=click.Path(exists=True), metavar="TEXT…")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The token file to write (NAME.bin; its index goes to NAME.idx).")
def prepare(texts: tuple[str, ...], output: Path) -> None:
    """Tokenize TEXT… (text files, folders of them, JSONL with a 'text' field) into one memory-mapped file.

    Tokens are bytes (the payload's vocabulary); documents are every non-empty text file and JSONL record, in
    argument order, files of a folder in name order. The payload reads the result with --data at any size:
    it maps the file and reads only the windows it trains on."""
    _check_output(output)
    empty = [text for text in texts if not corpus.files(Path(text))]
    if empty:
        raise LaunchdeckError(f"{empty[0]}: no text files ({', '.join(sorted(corpus.TEXT_SUFFIXES))})")
    stream = itertools.chain.from_iterable(sources.pieces(Path(text)) for text in texts)
    done = tokens.write(stream, output)
    if done.tokens < corpus.MIN_BYTES:
        for path in (output, tokens.index_path(output)):
            path.unlink(missing_ok=True)
        raise LaunchdeckError(f"{' '.join(texts)}: only {done.tokens} bytes of text (need >= {corpus.MIN_BYTES} "
                              "to train on); nothing written")
    megabytes = done.tokens / 1e6
    click.echo(f"{output}: {done.tokens:,} tokens, {done.documents:,} documents; {megabytes:.1f} MB in "
               f"{done.seconds:.2f} s ({megabytes / max(done.seconds, 1e-9):.0f} MB/s)")


def _check_output(output: Path) -> None:
    """A new ``.bin`` in an existing folder: an earlier token file is never overwritten."""
    if output.suffix != ".bin":
        raise LaunchdeckError(f"-o {output}: a token file's name ends in .bin (its index: .idx)")
    for path in (output, tokens.index_path(output)):
        if path.exists():
            raise LaunchdeckError(f"-o {output}: {path} exists; remove it or choose another name")
    if not output.parent.is_dir():
        raise LaunchdeckError(f"-o {output}: no such directory {output.parent}")
