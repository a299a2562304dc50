"""``python -m launcher.node.agent``: the watchdog every node (or rank) of a multi-host launch runs under.

    python -m launcher.node.agent --node 1 [--host H] [--stdin-stop] -- python -m torch.distributed.run …
    python -m launcher.node.agent --per-rank --rank-logs DIR -- python -u -m launcher.payload.train …   (under mpirun)

It starts the command in its own session, becomes a child subreaper (so every process below it stays
findable, orphans included), relays the command's output line by line, and until the command ends:

- writes a heartbeat event every ``--beat`` seconds; the launcher declares a node lost when they
  stop. When a heartbeat cannot be written, the launcher's connection (ssh, pdsh, mpirun …) is gone,
  and the agent tears its whole tree down: a killed ssh client never leaves remote ranks behind;
- carries on its heartbeats the progress records its ranks keep (:mod:`launcher.node.progress`), for
  the launcher's stall watch;
- notices when a rank process ends (a ``gone`` event stamped with this host's clock, so the launcher
  can name the first failure across hosts rather than its collateral);
- kills a process that stays stopped (SIGSTOP, a tty stop) for ``--hang-timeout`` seconds and says
  so, turning a hang its peers would wait out for a 30-minute collective timeout into a failure now;
- on SIGTERM/SIGINT/SIGHUP (or EOF on stdin with ``--stdin-stop``) tears its tree down: SIGTERM,
  then SIGKILL after ``--grace`` seconds. Only its own descendants are touched.

Stdlib only: it starts in tens of milliseconds and never imports torch.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import events, processes, progress, rankenv, torchrun_failures

TAIL_LINES = 400  # enough for torch elastic's failure table after a burst of tracebacks
OUTPUT_LINES = 10_000  # relayed lines that may wait for a slow stream before the command waits too
RELAY_JOIN_S = 0.5
TICK_S = 0.05  # how often rank processes are checked for having ended
SCAN_S = 0.5  # how often the process tree is re-read (new ranks, stopped processes)
RESEND_BEATS = 10  # every this many heartbeats, every rank's progress rides on one, changed or not


@dataclass(frozen=True)
class Options:
    """The agent's command line, parsed once: who it is, what it runs, its timeouts."""

    id: str  # node<N> or rank<R>: the launcher's key for this agent
    host: str
    rank: int | None  # per-rank mode: the rank this agent runs
    command: list[str]
    rank_logs: str | None
    beat_s: float
    hang_timeout: float  # seconds a process may stay stopped before it is killed (0: never)
    grace_s: float
    heartbeat_timeout: float  # the launcher's: our output stalled this long means it is gone
    stdin_stop: bool
    tag: str  # events.tag_for(the run directory)
    progress_dir: str | None = None  # where this node's ranks keep their progress records (launcher.node.progress)


class Output:
    """Our stdout/stderr: whole lines, never interleaved, written by one thread.

    Nothing else ever blocks on a write: when the stream stalls (a partition, a stopped launcher),
    heartbeats are dropped, relayed output waits in a bounded queue (and the command behind it),
    and the main loop still acts on signals. A stream that makes no progress for ``heartbeat_timeout`` seconds
    counts as gone, like one that fails with EPIPE."""

    def __init__(self, opts: Options):
        self.opts, self.queue, self.dead = opts, queue.Queue(maxsize=OUTPUT_LINES), set()  # fds that failed
        self.progress = time.monotonic()  # when the queue was last empty or a write completed
        threading.Thread(target=self._writer, daemon=True).start()

    @property
    def broken(self) -> bool:
        return 1 in self.dead  # stdout carries the events: without it the launcher cannot hear us

    def write(self, fd: int, data: bytes, block: bool = True) -> None:
        if fd in self.dead:
            return
        try:
            self.queue.put((fd, data), block=block, timeout=self.opts.heartbeat_timeout if block else None)
        except queue.Full:
            pass  # only a heartbeat or a late line: the stream is stalled anyway

    def _writer(self) -> None:
        while True:
            fd, data = self.queue.get()
            try:
                while data and fd not in self.dead:
                    data = data[os.write(fd, data):]
            except OSError:  # EPIPE: whoever read us (ssh, pdsh, mpirun) is gone
                self.dead.add(fd)
            self.progress = time.monotonic()
            self.queue.task_done()

    def gone(self, now: float) -> bool:
        """EPIPE, or no write completed for ``heartbeat_timeout`` while lines wait (heartbeats keep
        ``progress`` fresh)."""
        stalled = self.queue.unfinished_tasks and now - self.progress > self.opts.heartbeat_timeout
        return self.broken or bool(stalled)

    def drain(self, seconds: float) -> None:
        """Give the last lines (the exit event) a bounded chance to leave."""
        deadline = time.monotonic() + seconds
        while self.queue.unfinished_tasks and not self.broken and time.monotonic() < deadline:
            time.sleep(0.01)

    def event(self, kind: str, **fields: object) -> None:
        """Never blocks: when the stream is this stalled, the launcher learns it from the silence."""
        self.write(1, events.encode(self.opts.tag, kind, id=self.opts.id, **fields).encode(), block=False)

    def note(self, text: str) -> None:
        self.write(2, f"launchdeck agent [{self.opts.host} {self.opts.id}]: {text}\n".encode(), block=False)


@dataclass
class Stop:
    """Why the agent is stopping (the first reason wins) and the signal that asked it to, if any."""

    reason: str = ""
    signum: int = 0

    def request(self, reason: str, signum: int = 0) -> None:
        if not self.reason:
            self.reason, self.signum = reason, signum


@dataclass
class RankWatch:
    """Rank processes below the agent: which ended (and when), which stay stopped."""

    opts: Options
    out: Output
    ranks: dict[int, int] = field(default_factory=dict)  # pid -> rank
    stopped: dict[int, float] = field(default_factory=dict)  # pid -> monotonic time first seen stopped
    next_scan: float = 0.0

    def tick(self, child: int, now: float) -> None:
        for pid, rank in list(self.ranks.items()):
            if processes.state(pid) in (None, "Z"):
                del self.ranks[pid]
                self.out.event("gone", rank=rank, t=time.time())
        if now >= self.next_scan:
            self.next_scan = now + SCAN_S
            self._scan(child, now)

    def rank_ids(self) -> list[int]:
        return [self.opts.rank] if self.opts.rank is not None else sorted(self.ranks.values())

    def _scan(self, child: int, now: float) -> None:
        below = [child, *processes.descendants(child)]
        if self.opts.rank is None:
            self.ranks.update(processes.rank_tops(below))
        stopped = {pid for pid in below if processes.state(pid) in ("T", "t")}
        self.stopped = {pid: self.stopped.get(pid, now) for pid in stopped}
        for pid, since in list(self.stopped.items()):
            if self.opts.hang_timeout and now - since >= self.opts.hang_timeout:
                self._kill_hung(pid, now - since)

    def _kill_hung(self, pid: int, seconds: float) -> None:
        rank = self.opts.rank if self.opts.rank is not None else rankenv.lookup(processes.environ(pid), "RANK")
        self.out.note(f"rank {rank} (pid {pid}) has been stopped for {seconds:.1f} s: killing it")
        self.out.event("hung", rank=rank, pid=pid, seconds=round(seconds, 1), t=time.time())
        processes.signal_all([pid], signal.SIGKILL)
        self.stopped.pop(pid, None)


@dataclass
class ProgressRelay:
    """The progress records of this agent's ranks, read at each heartbeat: the changed ones ride on it, and
    every one every ``RESEND_BEATS`` beats (a heartbeat dropped on a stalled stream loses nothing for long)."""

    directory: str | None
    sent: dict[int, progress.Position] = field(default_factory=dict)
    beats: int = 0

    def beat(self, ranks: list[int]) -> dict[str, dict[str, list]]:
        """The heartbeat's fields: ``progress`` when there is something to say."""
        self.beats += 1
        if self.beats % RESEND_BEATS == 0:
            self.sent.clear()
        fresh = self._changed(ranks) if self.directory else {}
        return {"progress": fresh} if fresh else {}

    def _changed(self, ranks: list[int]) -> dict[str, list]:
        fresh = {}
        for rank in ranks:
            position = progress.read(self.directory, rank)
            if position is not None and position != self.sent.get(rank):
                self.sent[rank] = position
                fresh[str(rank)] = position.as_list()
        return fresh


def relay(stream: IO[bytes], out: Output, fd: int, prefix: bytes | None, log: IO[bytes] | None,
          tail: deque[bytes] | None) -> None:
    """Copy a pipe line by line to our fd (with a prefix) and/or a log file; keep its last lines."""
    with stream:
        for line in iter(stream.readline, b""):
            if tail is not None:
                tail.append(line)
            if log is not None:
                log.write(line)
                log.flush()
            if prefix is not None:
                out.write(fd, prefix + line)


def start(opts: Options, out: Output, tail: deque[bytes]) -> tuple[subprocess.Popen, list[threading.Thread]]:
    """The command, and a relay per stream; ``tail`` keeps stderr's end (where torchrun's failure table goes)."""
    child = subprocess.Popen(opts.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    streams = ((child.stdout, 1, ".log", None), (child.stderr, 2, ".err.log", tail))
    threads = [threading.Thread(target=relay, args=(stream, out, fd, *_sink(opts, suffix), keep), daemon=True)
               for stream, fd, suffix, keep in streams]
    for thread in threads:
        thread.start()
    return child, threads


def _sink(opts: Options, suffix: str) -> tuple[bytes | None, IO[bytes] | None]:
    """Node mode: relay verbatim. Per-rank mode: a log file per rank; local rank 0 echoed with a prefix."""
    if opts.rank_logs is None:
        return b"", None
    log = open(Path(opts.rank_logs) / f"rank{opts.rank}{suffix}", "ab")  # noqa: SIM115 (closed at exit)
    echo = rankenv.lookup(os.environ, "LOCAL_RANK") in (0, None)
    return (f"[rank{opts.rank}]:".encode() if echo else None), log


def supervise(opts: Options) -> int:
    """Run the command under watch; returns its exit status (128 + signal when it was killed)."""
    processes.become_subreaper()
    out, stop = Output(opts), Stop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda s, _f: stop.request(f"got {signal.Signals(s).name}", s))
    tail: deque[bytes] = deque(maxlen=TAIL_LINES)
    child, relays = start(opts, out, tail)
    if opts.stdin_stop:
        threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    out.event("start", pid=os.getpid(), host=opts.host)
    watch, relay_progress, next_beat = RankWatch(opts, out), ProgressRelay(opts.progress_dir), 0.0
    while child.poll() is None and not stop.reason:
        now = time.monotonic()
        if now >= next_beat:
            out.event("beat", **relay_progress.beat(watch.rank_ids()))
            next_beat = now + opts.beat_s
        if out.gone(now):
            stop.request("the launcher's connection is gone")
        watch.tick(child.pid, now)
        time.sleep(TICK_S)
    ended = time.time()  # the command's end as this host saw it (per-rank mode: the rank's)
    if stop.reason and child.poll() is None:
        out.note(f"{stop.reason}: stopping this node's processes")
        processes.terminate_tree(grace=opts.grace_s, spare=child.pid)
    code = child.wait()
    watch.tick(child.pid, time.monotonic())  # ranks that ended in the last moments
    for thread in relays:
        thread.join(timeout=RELAY_JOIN_S)
    failed = [[f.rank, f.exit_code] for f in torchrun_failures.failures(b"".join(tail).decode(errors="replace"))]
    out.event("exit", code=code, rank=opts.rank, failures=failed, t=ended)
    out.drain(RELAY_JOIN_S)
    processes.terminate_tree(grace=1.0)  # orphans the command left behind
    return 128 + stop.signum if stop.signum else (code if code >= 0 else 128 - code)


def _watch_stdin(stop: Stop) -> None:
    """The ssh transport keeps our stdin open; the launcher closes it to stop this node."""
    while os.read(0, 4096):  # the raw fd: a buffered reader's lock would abort interpreter shutdown
        pass
    stop.request("the launcher closed the control channel")


def parse(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog="python -m launcher.node.agent", description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--node", help="node rank (node mode: the command is this node's torchrun)")
    mode.add_argument("--per-rank", action="store_true", help="the command is one rank (under mpirun/horovodrun)")
    p.add_argument("--host", help="this host's name in notes (default: $SLURMD_NODENAME or the hostname)")
    p.add_argument("--rank-logs", help="per-rank mode: write the rank's output to DIR/rank<R>.log, .err.log")
    p.add_argument("--beat", type=float, default=1.0, help="seconds between heartbeats")
    p.add_argument("--hang-timeout", type=float, default=5.0, help="seconds a process may stay stopped (0: never)")
    p.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL at teardown")
    p.add_argument("--heartbeat-timeout", type=float, default=10.0, help="seconds our output may make no "
                   "progress before the launcher counts as gone (it declares us lost after as long)")
    p.add_argument("--stdin-stop", action="store_true", help="EOF on stdin stops the node")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command after --")
    rank = rankenv.lookup(os.environ, "RANK") if args.per_rank else None
    if args.per_rank and rank is None:
        p.error("--per-rank needs RANK, OMPI_COMM_WORLD_RANK or HOROVOD_RANK in the environment")
    host = args.host or os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    return Options(id=events.rank_id(rank) if args.per_rank else events.node_id(args.node), host=host, rank=rank,
                   command=command, rank_logs=args.rank_logs, beat_s=args.beat, hang_timeout=args.hang_timeout,
                   grace_s=args.grace, heartbeat_timeout=args.heartbeat_timeout, stdin_stop=args.stdin_stop,
                   tag=events.tag_for(os.environ.get("LAUNCHDECK_RUN_DIR", "")),
                   progress_dir=os.environ.get(progress.ENV))


def main(argv: list[str] | None = None) -> int:
    return supervise(parse(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
