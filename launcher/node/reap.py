"""``python -m launcher.node.reap --run-dir DIR PID…``: kill frozen agents of one job and everything below them.

A node whose agent stops answering (the agent stopped, the host overloaded) cannot tear its own tree
down; the launcher then runs this on that host (over ssh, like the job itself). A PID is only touched
when it still is a ``launcher.node.agent`` of that very run directory, so a reused PID is never hit.
Stdlib only.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import processes

AGENT = f"{__package__}.agent"  # the agent's module path (launcher.entrypoints.AGENT)


def is_agent_of(pid: int, run_dir: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return AGENT.encode() in argv and processes.environ(pid).get("LAUNCHDECK_RUN_DIR") == run_dir


def reap(pids: list[int], run_dir: str) -> list[int]:
    """SIGKILL each agent of ``run_dir`` among ``pids`` and its descendants (stopped ones too); returns
    what was signalled."""
    killed = []
    for pid in pids:
        if is_agent_of(pid, run_dir):
            tree = [*processes.descendants(pid), pid]
            processes.signal_all(tree, signal.SIGKILL)
            killed += tree
    return killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.node.reap", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", required=True, help="the job's run directory (its LAUNCHDECK_RUN_DIR)")
    parser.add_argument("pids", nargs="+", type=int)
    args = parser.parse_args(argv)
    killed = reap(args.pids, args.run_dir)
    print(f"launchdeck reap: killed {len(killed)} process(es)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
