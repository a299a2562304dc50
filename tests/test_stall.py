"""The stall watch: the rule on positions (a clock we drive), the progress record a rank keeps, and the
stacks of real blocked processes taken by py-spy and by the rank's own faulthandler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import launcher
from launcher.errors import STALLED_EXIT
from launcher.node import agent, progress, stacks
from launcher.node.progress import Position
from launcher.run import stall
from launcher.run.stall import StallWatch

from .launching import launchdeck, processes_of, result


def pos(done: int, working: int | None = None, t: float = 0.0, state: str = "train") -> Position:
    return Position(done, done if working is None else working, state, t)


def armed(world: int = 2, timeout: float | None = 5.0) -> StallWatch:
    """Every rank has finished step 1 at t=0 (the watch's clock and the ranks')."""
    watch = StallWatch(timeout, world)
    for rank in range(world):
        watch.report(rank, pos(1, t=0.0), now=0.0)
    return watch


def test_start_up_and_the_first_step_are_never_judged():
    watch = StallWatch(5.0, 2)
    watch.report(0, pos(0, 1), now=0.0)  # rank 0 began step 1; rank 1 still compiling its ops
    assert watch.check(100.0) is None
    watch.report(1, pos(0, 1), now=100.0)
    watch.report(0, pos(1), now=150.0)  # a 150 s first step
    assert watch.check(200.0) is None  # rank 1 has not finished step 1 yet
    watch.report(1, pos(1), now=200.0)
    assert watch.armed and watch.check(204.0) is None
    found = watch.check(206.0)
    assert found is not None and found.seconds == pytest.approx(6.0) and found.behind == []


def test_nobody_moving_is_a_stall_and_the_rank_on_an_earlier_step_is_behind():
    watch = armed(world=3)
    for rank in (0, 2):
        watch.report(rank, pos(9, 10), now=1.0)  # in step 10, waiting in its collective
    watch.report(1, pos(9), now=1.0)  # finished step 9 and never began step 10
    assert watch.check(5.9) is None
    found = watch.check(6.5)
    assert found.behind == [1] and found.limit == 5.0
    assert stall.describe(found) == ("stalled: no rank made progress for 5.5 s (stall timeout 5 s); rank 1 behind "
                                     "(last finished step 9; the others are in step 10)")


def test_a_rank_silent_while_the_others_move_falls_behind():
    watch = armed(world=3)
    for now in range(1, 9):
        for rank in (0, 2):
            watch.report(rank, pos(1 + now, t=now), now=now)
        assert (watch.check(now) is None) == (now <= 5)
    found = watch.check(8.0)
    assert found.behind == [1] and "rank 1 made no progress for 8.0 s while the others did" in found.reason


def test_the_default_limit_is_a_multiple_of_the_longest_silence_with_a_floor():
    watch = armed(timeout=None)
    assert watch.limit == stall.FLOOR_S
    watch.report(0, pos(2, t=9.0), now=9.0)  # 9 s from finishing step 1 to finishing step 2 (a save)
    assert watch.limit == stall.MULTIPLE * 9.0
    watch.report(1, pos(2, t=0.5), now=9.0)
    assert watch.check(9.0 + 89.0) is None and watch.check(9.0 + 91.0) is not None


def test_zero_never_judges_and_finished_ended_or_saving_ranks_are_not_judged():
    assert armed(timeout=0).check(1e9) is None
    watch = armed(world=3)
    watch.report(0, pos(5, state="finished"), now=1.0)  # its steps are done: shutting down
    watch.report(1, pos(5, state="finished"), now=1.0)
    watch.ended.add(1)  # and its process is gone
    found = watch.check(100.0)
    assert found is not None and found.behind == []  # rank 2 still trains, and is judged


def test_a_rank_gone_mid_training_is_a_failure_for_the_exit_path_not_a_stall():
    watch = armed()
    watch.ended.add(1)  # still "train" in its record: it crashed
    assert watch.check(100.0) is None


def test_while_a_rank_saves_nobody_is_judged_and_the_clocks_restart_after_the_save():
    watch = armed()
    watch.report(0, pos(5, state="save"), now=1.0)  # rank 0 saves; rank 1 waits for it in a collective
    assert watch.check(500.0) is None
    watch.report(0, pos(5, 6), now=500.0)  # the save ended
    assert watch.check(504.0) is None  # rank 1 last moved at 0 s: it waited for the save, it is not behind
    assert watch.slowest == 0.0  # the save's silence does not raise the default limit
    assert watch.check(506.0).seconds == pytest.approx(6.0)


def test_without_progress_records_silence_counts_with_an_explicit_timeout_only():
    explicit, default = StallWatch(3.0, 2), StallWatch(None, 2)
    assert explicit.check(1e6) is None  # nothing printed yet: start-up, however silent, is not judged
    for watch in (explicit, default):
        watch.output(now=10.0)
    assert explicit.check(12.0) is None and default.check(1e6) is None
    found = explicit.check(14.0)
    assert found.reason.startswith("no output from any rank for 4.0 s") and found.behind == []


def test_a_record_round_trips_and_a_torn_or_foreign_one_is_ignored(tmp_path):
    reporter = progress.Reporter(tmp_path, 3)
    assert progress.read(tmp_path, 3).state == "start"
    reporter.begin(7)
    assert progress.read(tmp_path, 3) == Position(0, 7, "train", progress.read(tmp_path, 3).t)
    reporter.finished_step(7)
    reporter.finished()
    found = progress.read(tmp_path, 3)
    assert (found.done, found.working, found.state) == (7, 7, "finished") and abs(found.t - time.time()) < 5
    assert os.path.getsize(progress.path(tmp_path, 3)) == progress.RECORD  # rewritten in place, never grows
    assert Position.from_list(found.as_list()) == found
    for data in (b"", b"7 7 train", b"7 6 train 1.0", b"x 7 train 1.0", b"7 7 sleeping 1.0", b"\xff\xfe"):
        assert Position.decode(data) is None, data
    for items in (None, "7 7 train 1", [7, 7, "train"], {"done": 7}):
        assert Position.from_list(items) is None
    assert progress.read(tmp_path, 4) is None


def test_the_agent_carries_only_the_ranks_that_moved(tmp_path):
    relay = agent.ProgressRelay(str(tmp_path))
    assert relay.beat([0, 1]) == {}  # no records yet
    reporters = {rank: progress.Reporter(tmp_path, rank) for rank in (0, 1)}
    assert {rank: items[2] for rank, items in relay.beat([0, 1])["progress"].items()} == {"0": "start", "1": "start"}
    reporters[0].begin(1)
    first = relay.beat([0, 1])
    assert list(first["progress"]) == ["0"] and first["progress"]["0"][:3] == [0, 1, "train"]
    assert relay.beat([0, 1]) == {}
    assert agent.ProgressRelay(None).beat([0]) == {}


BLOCKED = textwrap.dedent("""
    import os, sys, threading, time
    from launcher.node import progress
    reporter = progress.from_env()
    reporter.begin(3)
    def ready_once_blocked(main):  # "ready" only once the main thread really waits: its stack is the test's
        while sys._current_frames()[main].f_code.co_name != "wait":
            time.sleep(0.01)
        print("ready", flush=True)
    def blocked_here():
        threading.Thread(target=ready_once_blocked, args=(threading.get_ident(),), daemon=True).start()
        threading.Event().wait()
    blocked_here()
""")


@pytest.fixture
def blocked_rank(tmp_path):
    """A real rank process (RANK=5, a progress record) blocked on a lock, below a root carrying the run dir."""
    env = {**os.environ, progress.ENV: str(tmp_path / "progress"), stacks.RUN_DIR_ENV: str(tmp_path)}
    env.pop("RANK", None)
    start_rank = "import os, subprocess, sys; subprocess.run(sys.argv[1:], env={**os.environ, 'RANK': '5'})"
    root = subprocess.Popen([sys.executable, "-c", start_rank, sys.executable, "-c", BLOCKED], env=env,
                            stdout=subprocess.PIPE)
    assert root.stdout.readline() == b"ready\n"
    yield root
    stacks.processes.signal_all(stacks.processes.descendants(root.pid), signal.SIGKILL)
    root.kill()
    root.wait()


def test_py_spy_dumps_a_blocked_rank_below_its_root(blocked_rank, tmp_path):
    (found,) = stacks.collect([blocked_rank.pid], str(tmp_path))
    assert (found.rank, found.tool) == (5, "py-spy")
    assert stall.innermost(found.text)[2].startswith("blocked_here (<string>:")
    assert stacks.collect([blocked_rank.pid], str(tmp_path / "another-run")) == []  # not this job's: untouched


@pytest.mark.parametrize("tool, note", [(None, "py-spy is not installed"),
                                        ("/bin/false", "py-spy could not attach: no output")])
def test_without_py_spy_the_ranks_own_faulthandler_writes_its_stacks(blocked_rank, tmp_path, monkeypatch, tool,
                                                                      note):
    monkeypatch.setattr(stacks, "py_spy", lambda: tool)
    (found,) = stacks.collect([blocked_rank.pid], str(tmp_path))
    assert found.tool == "faulthandler" and found.note == note
    assert progress.stack_path(tmp_path / "progress", 5).read_text() == found.text
    assert [frame.split(" ")[0] for frame in stall.innermost(found.text)] == ["wait", "wait", "blocked_here"]
    assert blocked_rank.poll() is None  # SIGUSR1 was handled, not fatal


def test_a_rank_with_a_sigusr1_handler_of_its_own_is_never_sent_the_signal(tmp_path):
    script = ("import os, signal, sys, threading\nsignal.signal(signal.SIGUSR1, lambda *a: print('requeued'))\n"
              "from launcher.node import progress\nprogress.from_env()\nprint('ready', flush=True)\n"
              "threading.Event().wait()\n")
    env = {**os.environ, "RANK": "0", progress.ENV: str(tmp_path)}
    rank = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE)
    try:
        assert rank.stdout.readline() == b"ready\n"
        assert stacks.catches(rank.pid, progress.STACK_SIGNAL) and not progress.stack_path(tmp_path, 0).exists()
        found = stacks._faulthandler(rank.pid, 0, "py-spy could not attach")
        assert found.tool is None and "no faulthandler registered" in found.note
    finally:
        rank.kill()
        rank.wait()
    assert b"requeued" not in rank.stdout.read()


def test_a_process_without_a_handler_is_never_sent_the_signal(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.3)
        assert not stacks.catches(sleeper.pid, progress.STACK_SIGNAL)
        found = stacks._faulthandler(sleeper.pid, 0, "py-spy could not attach")
        assert found.tool is None and "no faulthandler registered" in found.note and sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


# --- real jobs on this machine -------------------------------------------------------------------------

STALL_S = 4.0


def _last_progress(run_dir) -> float:
    """When the last rank last moved, on this machine's clock: the moment the job stalled."""
    return max(progress.read(run_dir / "progress", rank).t for rank in range(2))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "zero3"])
def test_a_stalled_collective_is_reported_with_every_ranks_stack_within_twice_the_timeout(tmp_path, strategy):
    run_dir = tmp_path / "run"
    done = launchdeck("launch", strategy, "--cpu", "--steps", "60", "--stall-at", "1:10", "--stall-timeout",
                      f"{STALL_S:g}", "--run-dir", str(run_dir), cwd=tmp_path)
    ended = time.time()
    assert done.returncode == STALLED_EXIT, done.stderr[-3000:]
    assert ended - _last_progress(run_dir) < 60  # long before any collective timeout (make bench-stall: the times)
    report = done.stderr[done.stderr.index("launchdeck: job failed"):].splitlines()
    assert report[0].startswith("launchdeck: job failed after") and "rank 1 on localhost: stalled: no rank made " \
        "progress for" in report[0] and "rank 1 behind (last finished step 9; the others are in step 10)" in report[0]
    ranks = {line.split()[1]: line for line in report if line.startswith("  rank ")}
    assert "(after step 9) BEHIND [py-spy]: " in ranks["1"] and "stall_drill (train/drills.py:" in ranks["1"]
    assert "(in step 10) [py-spy]: " in ranks["0"] and "stall_drill" not in ranks["0"]
    assert "distributed" in ranks["0"]  # waiting in a collective (DDP's broadcast, ZeRO's reduce-scatter …)
    for rank in (0, 1):
        assert "Thread " in (run_dir / "logs" / "stall" / f"rank{rank}.txt").read_text()
    outcome = json.loads((run_dir / "outcome.json").read_text())
    assert outcome["stalled"] is True and outcome["failure"]["rank"] == 1 and len(outcome["failure"]["stacks"]) == 2
    assert not processes_of(run_dir)


PROGRESS_SCRIPT = textwrap.dedent("""
    import os, time
    import launcher
    rank = int(os.environ["RANK"])
    for step in range(1, 100000):
        if rank == 1 and step == 5:
            time.sleep(3600)  # stuck while rank 0 goes on
        launcher.progress(step)
        time.sleep(0.05)
""")
SILENT_SCRIPT = "import time\nprint('started', flush=True)\ntime.sleep(3600)\n"  # silent after one line


@pytest.mark.slow
@pytest.mark.parametrize("script, reason", [
    (PROGRESS_SCRIPT, "stalled: rank 1 made no progress for"),  # one call per step in the user's script
    (SILENT_SCRIPT, "stalled: no output from any rank for"),  # no progress calls: silence is the rule
])
def test_a_users_script_is_judged_by_its_progress_calls_or_else_its_output(tmp_path, script, reason):
    (tmp_path / "train.py").write_text(script)
    run_dir = tmp_path / "run"
    done = launchdeck("launch", "ddp", "--cpu", "--stall-timeout", "2", "--run-dir", str(run_dir), "--",
                      "train.py", cwd=tmp_path, env={"PYTHONPATH": str(Path(launcher.__file__).parents[1])})
    assert done.returncode == STALLED_EXIT, done.stderr[-3000:]
    assert reason in done.stderr
    ranks = [line for line in done.stderr.splitlines() if line.startswith("  rank ")]
    assert len(ranks) == 2 and all("[py-spy]: <module> (" in line and "train.py:" in line for line in ranks)
    assert not processes_of(run_dir)


@pytest.mark.slow
def test_checkpoints_and_a_slow_start_are_no_stall(tmp_path):
    """ZeRO-3 with CPU offload: a C++ optimizer built at start-up, a slow first step, saves every 5 steps."""
    done = launchdeck("launch", "zero3-offload", "--cpu", "--steps", "16", "--save-every", "5", "--stall-timeout",
                      "5", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert result(tmp_path / "run")["steps"] == 16
    assert progress.read(tmp_path / "run" / "progress", 1).state == "finished"


def test_a_rank_that_keeps_a_record_is_never_judged_by_silence():
    watch = StallWatch(3.0, 2)
    watch.output(now=0.0)
    watch.report(0, pos(0, state="start"), now=0.5)  # the payload, still importing torch on rank 1
    assert watch.check(100.0) is None
