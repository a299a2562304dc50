"""``launchdeck report``: report.md plus PNG plots from tune directories, benches and run records."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("directories", nargs=-1, required=True)
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Where report.md and the PNGs go "
              "(default: the first DIRECTORY).")
def report(directories: tuple[str, ...], out: str | None) -> None:
    """Write report.md and PNG plots (throughput, memory estimate vs measured, loss, scaling).

    \b
    DIRECTORIES: tune directories, `make bench` / `make bench-memory` outputs, or run records.
    Examples:
      launchdeck report runs/tune-20261129-120000
      launchdeck report runs/bench-memory runs/tune-20261129-120000 -o runs/report
    """
    from ..report import write_report  # matplotlib: only when a report is drawn

    for path in write_report(list(directories), Path(out or directories[0])):
        click.echo(str(path))
