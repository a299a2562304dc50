"""The documented example hostfiles stay valid, and DeepSpeed reads them the same way."""

from __future__ import annotations

import pytest

from launcher.cluster import hosts, schedulers

from .conftest import REPO

EXAMPLES = sorted(p for p in (REPO / "hostfiles").iterdir() if p.name != "README.md")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_parses(path):
    parsed = hosts.read(path)
    assert parsed and all(h.slots >= 1 for h in parsed)
    if "slots=" in path.read_text():
        from deepspeed.launcher.runner import fetch_hostfile

        assert dict(fetch_hostfile(str(path))) == {h.name: h.slots for h in parsed}


def test_slurm_example_is_what_from_slurm_writes(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[01-04]")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "8(x4)")
    written = hosts.format_hosts(schedulers.from_slurm(None, None), "deepspeed")
    assert hosts.parse(written) == hosts.read(REPO / "hostfiles" / "slurm-4-nodes")


def test_horovod_example_matches_its_deepspeed_twin():
    assert hosts.read(REPO / "hostfiles" / "two-nodes.horovod") == hosts.read(REPO / "hostfiles" / "two-nodes")
