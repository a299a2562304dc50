"""Shared helpers: run the CLI in-process, write a user's strategy file, fake hosts."""

from __future__ import annotations

import os
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


def worker_index() -> int:
    """This pytest-xdist worker's number (0 without xdist): parallel workers get their own hosts."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker[2:].isdigit() else 0


@pytest.fixture
def cluster():
    """Two fake hosts (network namespaces, each with its own hostname and sshd), gone after the test."""
    from .netns_cluster import FakeCluster

    if os.geteuid() != 0:
        pytest.fail("multi-host tests make network namespaces and need root (CI runs as root)")
    with FakeCluster(n_hosts=2, prefix=f"ldt{worker_index()}", subnet=20 + worker_index()) as fake:
        yield fake


@pytest.fixture
def slurm():
    """A real Slurm cluster on this machine: munged, slurmctld and two slurmd's as fake nodes."""
    from .slurm_cluster import SlurmCluster

    if os.geteuid() != 0:
        pytest.fail("the Slurm tests run slurmd as root (CI runs as root)")
    with SlurmCluster(nodes=2, cpus_per_node=4) as cluster:
        yield cluster
