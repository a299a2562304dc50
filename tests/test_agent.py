"""The per-node agent on real processes: hung ranks, a lost launcher, the stdin control channel, per-rank logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from launcher import entrypoints
from launcher.node import events, processes

# A stand-in for torchrun: starts ranks 0 and 1 (each sleeps), fails like torchrun when one ends badly.
FAKE_TORCHRUN = """
import os, subprocess, sys, time
ranks = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env={**os.environ, "RANK": str(r)})
         for r in range(2)]
while all(p.poll() is None for p in ranks):
    time.sleep(0.05)
for p in ranks:
    p.kill()
sys.exit(1)
"""


def agent(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", entrypoints.AGENT, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def wait_for_ranks(proc: subprocess.Popen, count: int = 2, timeout: float = 20) -> dict[int, int]:
    """rank -> pid, once the agent's command has started ``count`` ranks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {int(processes.environ(p).get("RANK", -1)): p for p in processes.descendants(proc.pid)}
        found.pop(-1, None)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError("the ranks never started")


def kinds(stdout: str) -> list[dict]:
    tag = events.tag_for(os.environ.get("LAUNCHDECK_RUN_DIR", ""))  # the agent's tag: its run directory's
    return [e for line in stdout.splitlines() if (e := events.decode(line, tag)) is not None]


def test_a_stopped_rank_is_reported_and_killed_so_the_node_fails_now():
    proc = agent("--node=1", "--host=h1", "--hang-timeout=1", "--", sys.executable, "-c", FAKE_TORCHRUN)
    ranks = wait_for_ranks(proc)
    stopped_at = time.monotonic()
    os.kill(ranks[1], signal.SIGSTOP)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and time.monotonic() - stopped_at < 5
    seen = kinds(out)
    assert [e["kind"] for e in seen][:2] == ["start", "beat"] and all(e["id"] == "node1" for e in seen)
    hung = next(e for e in seen if e["kind"] == "hung")
    assert (hung["rank"], hung["pid"]) == (1, ranks[1])
    assert all(e["t"] >= hung["t"] for e in seen if e["kind"] == "gone")  # what followed, on the same clock
    assert seen[-1]["kind"] == "exit" and seen[-1]["code"] == 1
    assert "rank 1 (pid" in err and "stopped for" in err
    assert not any(os.path.exists(f"/proc/{pid}") for pid in ranks.values())


def test_a_lost_launcher_connection_tears_the_tree_down():
    proc = agent("--node=0", "--", sys.executable, "-c", FAKE_TORCHRUN)
    ranks = wait_for_ranks(proc)
    proc.stdout.close()  # what a killed ssh client looks like from the remote side: our reader is gone
    assert proc.wait(timeout=15) != 0
    assert "the launcher's connection is gone" in proc.stderr.read()
    assert not any(processes.state(pid) not in (None, "Z") for pid in ranks.values())


def test_closing_stdin_stops_the_node_and_reports_its_exit():
    proc = agent("--node=0", "--stdin-stop", "--grace=2", "--", sys.executable, "-c", FAKE_TORCHRUN,
                 stdin=subprocess.PIPE)
    ranks = wait_for_ranks(proc)
    proc.stdin.close()
    proc.wait(timeout=15)
    assert "the launcher closed the control channel" in proc.stderr.read()
    assert kinds(proc.stdout.read())[-1]["kind"] == "exit"
    assert not any(processes.state(pid) not in (None, "Z") for pid in ranks.values())


@pytest.mark.parametrize("local_rank, echoed", [("0", True), ("1", False)])
def test_per_rank_mode_writes_the_rank_logs_and_echoes_local_rank_zero(tmp_path, local_rank, echoed):
    env = {**os.environ, "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_LOCAL_RANK": local_rank}
    script = "import sys; print('hello'); print('oops', file=sys.stderr); sys.exit(5)"
    proc = agent("--per-rank", f"--rank-logs={tmp_path}", "--", sys.executable, "-c", script, env=env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 5
    assert (tmp_path / "rank3.log").read_text() == "hello\n"
    assert (tmp_path / "rank3.err.log").read_text() == "oops\n"
    assert ("[rank3]:hello" in out, "[rank3]:oops" in err) == (echoed, echoed)
    exit_event = kinds(out)[-1]
    assert (exit_event["id"], exit_event["kind"], exit_event["rank"], exit_event["code"]) == ("rank3", "exit", 3, 5)


def test_the_exit_event_carries_torchruns_failure_table():
    table = ("Root Cause (first observed failure):\n[0]:\n  time : x\n  host : h\n  rank : 2 (local_rank: 0)\n"
             "  exitcode : -9 (pid: 1)\n")
    script = f"import sys; sys.stderr.write({table!r}); sys.exit(1)"
    proc = agent("--node=1", "--", sys.executable, "-c", script)
    out, _ = proc.communicate(timeout=30)
    assert kinds(out)[-1]["failures"] == [[2, -9]]


def test_hang_timeout_zero_leaves_a_stopped_rank_alone():
    proc = agent("--node=0", "--hang-timeout=0", "--", sys.executable, "-c", FAKE_TORCHRUN)
    ranks = wait_for_ranks(proc)
    try:
        os.kill(ranks[0], signal.SIGSTOP)
        time.sleep(2.5)
        assert processes.state(ranks[0]) == "T" and proc.poll() is None
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_sigterm_is_acted_on_while_the_output_stream_is_blocked():
    chatty = "import sys\nwhile True:\n    sys.stdout.write('x' * 1000 + '\\n')\n"
    proc = agent("--node=0", "--grace=1", "--", sys.executable, "-c", chatty)  # nobody reads its stdout
    time.sleep(2)  # the pipe to us is full by now and the agent's writer blocked on it
    proc.terminate()
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM


def test_reap_kills_a_frozen_agent_and_its_tree_but_only_of_its_own_run(tmp_path):
    from launcher.node.reap import reap

    proc = agent("--node=0", "--", sys.executable, "-c", FAKE_TORCHRUN,
                 env={**os.environ, "LAUNCHDECK_RUN_DIR": str(tmp_path)})
    ranks = wait_for_ranks(proc)
    os.kill(proc.pid, signal.SIGSTOP)
    assert reap([proc.pid], str(tmp_path / "another-run")) == []  # not this job's agent: untouched
    assert reap([os.getpid()], str(tmp_path)) == []  # not an agent at all
    killed = reap([proc.pid], str(tmp_path))
    assert set(killed) >= {proc.pid, *ranks.values()}
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert wait_for_gone(ranks.values())


def wait_for_gone(pids, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while any(processes.state(pid) not in (None, "Z") for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
