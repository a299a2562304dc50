"""``python -m launcher.node.stacks --run-dir DIR PID…``: every rank's Python stack on this host, now.

The launcher runs this on each host of a stalled job (over ssh, like the reap): each PID is an agent
(or a local torchrun) of that run directory, and the ranks are the processes below it that carry a
rank (:func:`ranks_below`). Each rank is dumped with ``py-spy dump`` (it reads the process's memory
through ptrace: no cooperation from the rank, works while it is blocked in C). Where py-spy is
missing or cannot attach, the rank's own ``faulthandler`` (registered by
:class:`launcher.node.progress.Reporter` on SIGUSR1) writes the stacks instead; a rank with neither
is reported as such. One JSON line per rank on stdout. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import processes, progress

DUMP_TIMEOUT_S = 5.0
FAULTHANDLER_WAIT_S = 2.0
RUN_DIR_ENV = "LAUNCHDECK_RUN_DIR"


@dataclass(frozen=True)
class RankStack:
    """One rank's stacks as dumped on its host: which tool produced them, and why not, if none did."""

    rank: int
    pid: int
    tool: str | None  # "py-spy", "faulthandler", or None
    text: str
    note: str = ""  # why py-spy (or everything) failed


def ranks_below(root: int) -> dict[int, int]:
    """pid -> rank of each rank process below ``root`` (``root`` itself never counts: a per-rank agent
    carries its rank's variables too)."""
    return processes.rank_tops(processes.descendants(root))


def py_spy() -> str | None:
    """py-spy next to this interpreter (a venv's bin), else on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.is_file() else shutil.which("py-spy")


def dump(pid: int, rank: int) -> RankStack:
    """py-spy first; the rank's faulthandler when py-spy cannot. A rank that ends meanwhile has no stacks."""
    try:
        return _dump(pid, rank)
    except OSError as exc:  # it exited (ProcessLookupError), or its files went with it
        return RankStack(rank, pid, None, "", f"gone while it was dumped: {exc.strerror or exc}")


def _dump(pid: int, rank: int) -> RankStack:
    tool = py_spy()
    if tool is None:
        return _faulthandler(pid, rank, "py-spy is not installed")
    found = _py_spy(tool, pid, rank)
    return found if isinstance(found, RankStack) else _faulthandler(pid, rank, found)


def _py_spy(tool: str, pid: int, rank: int) -> RankStack | str:
    """The rank's stacks as py-spy dumps them, or why it could not."""
    try:
        done = subprocess.run([tool, "dump", "--pid", str(pid)], capture_output=True, text=True,
                              timeout=DUMP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"py-spy did not answer within {DUMP_TIMEOUT_S:g} s"
    if done.returncode == 0 and done.stdout.strip():
        return RankStack(rank, pid, "py-spy", done.stdout)
    return f"py-spy could not attach: {_last_line(done.stderr or done.stdout)}"


def _faulthandler(pid: int, rank: int, note: str) -> RankStack:
    """Ask the rank to write its own stacks (SIGUSR1), only if it registered launchdeck's faulthandler (its
    ``.stack`` file exists) and handles the signal: SIGUSR1's default action would kill it, and a handler
    of the user's own (a requeue) must not be set off."""
    directory = processes.environ(pid).get(progress.ENV)
    path = progress.stack_path(directory, rank) if directory else None
    if path is None or not path.is_file() or not catches(pid, progress.STACK_SIGNAL):
        return RankStack(rank, pid, None, "", f"{note}; no faulthandler registered either")
    start = _size(path)
    os.kill(pid, progress.STACK_SIGNAL)
    text = _grown(path, start)
    return RankStack(rank, pid, "faulthandler" if text else None, text, note)


def catches(pid: int, signum: int) -> bool:
    """Whether ``pid`` has a handler for ``signum`` (the SigCgt mask of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0")
    return bool(int(mask, 16) >> (signum - 1) & 1)


def _grown(path: Path, start: int) -> str:
    """What the rank appended after ``start``, once it stopped growing (or after FAULTHANDLER_WAIT_S)."""
    deadline, last = time.monotonic() + FAULTHANDLER_WAIT_S, start
    while time.monotonic() < deadline:
        time.sleep(0.05)
        size = _size(path)
        if size > start and size == last:
            break
        last = size
    with open(path, "rb") as f:
        f.seek(start)
        return f.read().decode(errors="replace")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def collect(roots: list[int], run_dir: str) -> list[RankStack]:
    """The stacks of every rank below those of ``roots`` that belong to ``run_dir`` (a reused pid never
    does), dumped in parallel."""
    ours = [root for root in roots if processes.environ(root).get(RUN_DIR_ENV) == run_dir]
    ranks = {pid: rank for root in ours for pid, rank in ranks_below(root).items()}
    if not ranks:
        return []
    from concurrent.futures import ThreadPoolExecutor  # ~15 ms of imports: only when a job stalled

    with ThreadPoolExecutor(max_workers=min(16, len(ranks))) as pool:
        return sorted(pool.map(lambda item: dump(*item), ranks.items()), key=lambda stack: stack.rank)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.node.stacks", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", required=True, help="the job's run directory (its LAUNCHDECK_RUN_DIR)")
    parser.add_argument("pids", nargs="+", type=int, help="the job's agents (or local torchrun) on this host")
    args = parser.parse_args(argv)
    for stack in collect(args.pids, args.run_dir):
        print(json.dumps(asdict(stack)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
