"""The run API: one call from a request to an outcome and a run record, on real processes."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from launcher.errors import LaunchdeckError
from launcher.plan.prepare import prepare
from launcher.plan.request import LaunchRequest
from launcher.run import api, execute, preflight, record

RANK_FILES = """
import os, sys
from pathlib import Path
rank = int(os.environ["RANK"])
Path(os.environ["LAUNCHDECK_RUN_DIR"], f"hello.{rank}").write_text(os.environ["WORLD_SIZE"])
sys.exit(int(sys.argv[1]) if rank == 1 else 0)
"""


def script(tmp_path, code: int) -> tuple[str, ...]:
    path = tmp_path / "ranks.py"
    path.write_text(RANK_FILES)
    return (str(path), str(code))


@pytest.mark.slow
def test_launch_runs_every_rank_and_keeps_the_record(tmp_path):
    run_dir = tmp_path / "run"
    notices = []
    outcome = api.launch(LaunchRequest("zeropp", cpu=True, nproc=2, script=script(tmp_path, 0), run_dir=str(run_dir)),
                         console=io.StringIO(), notify=notices.append)
    assert (outcome.returncode, outcome.failure, outcome.run_dir) == (0, None, str(run_dir))
    assert sorted(p.name for p in run_dir.glob("hello.*")) == ["hello.0", "hello.1"]  # every rank ran, once
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "plan.json", "strategy.yaml", "env.json",
                                                   "versions.json", "outcome.json", "logs"}
    assert json.loads((run_dir / "outcome.json").read_text())["returncode"] == 0
    assert json.loads((run_dir / "versions.json").read_text())["python"] == ".".join(map(str, sys.version_info[:3]))
    assert any("ZeRO++" in notice for notice in notices)  # the CPU adaptations reach the caller first


@pytest.mark.slow
def test_a_failing_rank_is_the_outcome(tmp_path):
    outcome = api.launch(LaunchRequest("ddp", cpu=True, nproc=2, script=script(tmp_path, 3),
                                       run_dir=str(tmp_path / "run")), console=io.StringIO())
    assert (outcome.failure.rank, outcome.failure.exit_code) == (1, 3)
    assert execute.exit_code_for(outcome) == 3


def test_a_record_that_cannot_be_written_is_a_warning_not_the_jobs_failure(tmp_path):
    prepared = prepare(LaunchRequest("ddp", cpu=True, nproc=2, run_dir=str(tmp_path / "run")))
    ran, warnings = [], []
    with record.described(tmp_path / "not-made", prepared.rendered, prepared.plan, warn=warnings.append):
        ran.append(True)
    assert ran == [True]
    (warning,) = warnings
    assert warning.startswith("launchdeck: warning: the run record is incomplete: cannot write")


def test_a_used_run_directory_is_refused_before_anything_starts(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "mine.txt").write_text("keep")
    with pytest.raises(LaunchdeckError, match="is not empty"):
        api.launch(LaunchRequest("ddp", cpu=True, nproc=2, script=script(tmp_path, 0), run_dir=str(run_dir)))
    assert sorted(p.name for p in run_dir.iterdir()) == ["mine.txt"]


def test_a_local_launch_refuses_a_rendezvous_host(tmp_path):
    with pytest.raises(LaunchdeckError, match="--master-addr applies across hosts"):
        prepare(LaunchRequest("ddp", cpu=True, master_addr="10.0.0.1", run_dir=str(tmp_path / "run")))


def _hosts_plan(tmp_path, hidden: Path | None):
    """A plan for two hosts whose 'ssh' runs the line here, in a mount namespace of its own where ``hidden``
    is covered by an empty tmpfs: a host that does not share that directory (root only)."""
    hostfile = tmp_path / "hosts"
    hostfile.write_text("h1 slots=1\nh2 slots=1\n")
    prepared = prepare(LaunchRequest("ddp", cpu=True, hostfile=str(hostfile), launcher="ssh",
                                     script=script(tmp_path, 0), run_dir=str(tmp_path / "shared" / "run")))
    cover = f"mount -t tmpfs tmpfs {shlex.quote(str(hidden))} && " if hidden else ""
    shell = ["unshare", "--mount", "--propagation", "private", "sh", "-c", cover + 'eval "$1"']
    return dataclasses.replace(prepared, plan=dataclasses.replace(prepared.plan, remote_shell=shell))


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace per fake host (root)")
def test_a_host_that_does_not_share_the_run_directory_is_named_and_nothing_starts(tmp_path):
    prepared = _hosts_plan(tmp_path, hidden=tmp_path / "shared")
    config = prepared.plan.config_path
    with pytest.raises(LaunchdeckError) as refused:
        api.run(prepared)
    assert str(refused.value).startswith(f"preflight: h1: no {config}: the run directory is not on a filesystem "
                                         "this host shares (--run-dir) (and 1 more host(s))")
    assert not (tmp_path / "shared" / "run").exists()  # refused before the start: no record left behind
    shared = _hosts_plan(tmp_path, hidden=None)
    record.create(Path(shared.plan.run_dir))
    record.write_inputs(shared.plan, shared.rendered)
    assert all(check.ok for check in preflight.check_hosts(shared.plan, cpu=True, shared=config))


@pytest.mark.parametrize("field, path, said", [("interpreter", "/nope/bin/python", "no interpreter /nope/bin/python"),
                                               ("cwd", "/nope/work", "no directory /nope/work")])
def test_a_host_without_the_interpreter_or_the_directory_is_named_with_the_path(tmp_path, field, path, said):
    prepared = _hosts_plan(tmp_path, hidden=None)
    plan = prepared.plan
    nodes = [dataclasses.replace(plan.nodes[0], **{field: path}), *plan.nodes[1:]]
    plan = dataclasses.replace(plan, nodes=nodes, remote_shell=["sh", "-c", 'eval "$1"'])
    checks = preflight.check_hosts(plan, cpu=True)
    assert checks[0].problems == [said] and checks[1].ok
