"""Shared helpers: run the CLI in-process, write a user's strategy file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli():
    """Invoke ``launchdeck ARGS…`` in-process; returns click's Result (stdout and stderr apart)."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def write_yaml(tmp_path: Path):
    """Write dedented YAML text to ``tmp_path/NAME`` and return its path as a string."""

    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write
