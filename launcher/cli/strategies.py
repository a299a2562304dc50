"""``launchdeck strategies``: the catalog, one line each."""

from __future__ import annotations

import json

import click

from ..spec.catalog import load_strategy, names


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {name, engine, description}.")
def strategies(as_json: bool) -> None:
    """List the catalog's strategies: name, engine, description.

    \b
    Example:
      launchdeck strategies --json | jq -r '.[].name'
    """
    rows = [load_strategy(name) for name in names()]
    if as_json:
        click.echo(json.dumps([{"name": s.name, "engine": s.engine, "description": s.description}
                               for s in rows], indent=2))
        return
    width = max((len(s.name) for s in rows), default=4)
    for s in rows:
        click.echo(f"{s.name:<{width}}  {s.engine:<9}  {s.description}")
