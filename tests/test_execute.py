"""The executor's pieces: reading torch elastic's failure report, the report, ancestry-based teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from launcher.node import processes, torchrun_failures
from launcher.plan.model import LaunchPlan, NodePlan
from launcher.run.execute import Outcome, exit_code_for, report
from launcher.run.watch import Failure, Watch

AGENT_OUTPUT = """
Failures:
[1]:
  time      : 2026-11-22_05:56:27
  host      : node-a
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 4534)  (SIGTERM)
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-22_05:56:27
  host      : node-b
  rank      : 3 (local_rank: 1)
  exitcode  : 17 (pid: 4535)
  error_file: <N/A>
"""


def test_the_table_lists_the_root_cause_first():
    assert [(f.host, f.rank, f.exit_code) for f in torchrun_failures.failures(AGENT_OUTPUT)] == [("node-b", 3, 17),
                                                                                       ("node-a", 0, -15)]
    assert torchrun_failures.failures("no report here") == []


def test_the_root_cause_names_the_first_failed_rank_and_its_logs(tmp_path):
    (tmp_path / "rank3.err.log").write_text("warning\nTraceback\nValueError: boom\n")
    (tmp_path / "rank3.log").write_text("step 1\n\nstep 2\n")
    plan = LaunchPlan("ddp", "ddp", "local", 4, "127.0.0.1", 1, "localhost", str(tmp_path), "",
                      [NodePlan("localhost", [], "", "")])
    watch = Watch(plan)
    watch.on_exit([], "local", 1, AGENT_OUTPUT.splitlines(keepends=True))
    failure = watch.first(tmp_path)
    assert (failure.host, failure.rank, failure.exit_code) == ("node-b", 3, 17)
    assert list(failure.log_tails.values()) == [["warning", "Traceback", "ValueError: boom"], ["step 1", "step 2"]]
    text = report(Outcome(1, 4.2, False, failure))
    assert "rank 3 on node-b: exit code 17" in text and "ValueError: boom" in text
    assert exit_code_for(Outcome(1, 4.2, False, failure)) == 17


def test_signals_and_interrupts_map_to_exit_codes():
    killed = Failure("h", 0, -9, {})
    assert "signal SIGKILL" in report(Outcome(1, 1.0, False, killed))
    assert exit_code_for(Outcome(1, 1.0, False, killed)) == 1
    assert exit_code_for(Outcome(1, 1.0, True, None)) == 130
    assert exit_code_for(Outcome(0, 1.0, False, None)) == 0
    hung = Failure("h", 2, None, {}, "hung: stopped for 5.0 s")
    assert "rank 2 on h: hung: stopped for 5.0 s" in report(Outcome(1, 1.0, False, hung))
    assert exit_code_for(Outcome(1, 1.0, False, hung)) == 1


def test_terminate_tree_kills_descendants_and_orphans_but_not_strangers(tmp_path):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    script = tmp_path / "tree.py"
    # a child that spawns a grandchild, then exits: the grandchild is orphaned
    script.write_text("import subprocess, sys, time\n"
                      "p = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
                      "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
                      f"open({str(tmp_path / 'pid')!r}, 'w').write(str(p.pid))\n")
    probe = (f"import subprocess, sys, time, os\nfrom launcher.node import processes\nprocesses.become_subreaper()\n"
             f"subprocess.run([sys.executable, {str(script)!r}])\n"
             f"grandchild = int(open({str(tmp_path / 'pid')!r}).read())\n"
             "assert grandchild in processes.descendants(os.getpid())\n"
             "started = time.monotonic(); killed = processes.terminate_tree(grace=1.0)\n"
             "assert grandchild in killed and time.monotonic() - started < 5\n"
             "assert not processes.descendants(os.getpid())\n")
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        grandchild = int((tmp_path / "pid").read_text())
        time.sleep(0.2)
        assert not os.path.exists(f"/proc/{grandchild}") or "Z" in open(f"/proc/{grandchild}/stat").read().split()[2]
        assert stranger.poll() is None  # not ours: untouched
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait()


def test_descendants_of_a_process_without_children_is_empty():
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"]) as child:
        try:
            assert processes.descendants(child.pid) == []
            assert child.pid in processes.descendants(os.getpid())
        finally:
            child.kill()


DRIVER = """
import os, sys
from launcher.run.execute import exit_code_for, run
from launcher.plan.model import Command, LaunchPlan, NodePlan
argv = [sys.executable, "-c", sys.argv[2]]
plan = LaunchPlan("ddp", "ddp", "local", 1, "127.0.0.1", 1, "localhost", sys.argv[1], "",
                  [NodePlan("localhost", argv, ".", "")], commands=[Command("local", argv, ".")])
sys.exit(exit_code_for(run(plan, console=open(os.devnull, "w"))))
"""
IGNORE_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)"


def supervise(tmp_path, command: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), command])


def test_ctrl_c_is_acted_on_while_output_floods_in(tmp_path):
    proc = supervise(tmp_path, "while True: print('x' * 200)")
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 130


def test_a_second_ctrl_c_kills_at_once_even_what_ignores_sigterm_in_a_session_of_its_own(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    stubborn = (f"{IGNORE_TERM}\nimport subprocess, sys\n"
                f"p = subprocess.Popen([sys.executable, '-c', {IGNORE_TERM + '; time.sleep(120)'!r}], "
                f"start_new_session=True)\nopen({str(pid_file)!r}, 'w').write(str(p.pid))\ntime.sleep(120)\n")
    proc = supervise(tmp_path, stubborn)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 130
    assert time.monotonic() - started < 5  # not the 10 s grace period
    assert processes.state(int(pid_file.read_text())) in (None, "Z")  # its own session did not save it
