"""A real Slurm cluster on this machine, up in ~0.1 s, for tests of launchers that use srun, salloc and sbatch.

munged, slurmctld and one ``slurmd -N <node>`` per fake node run in the foreground as children we own,
with every file (munge key and socket, state, spool, logs, ``slurm.conf``) in one temp directory, so that
parallel test workers never share anything but the machine. Clients find the cluster through
``SLURM_CONF``; Slurm finds munge through ``AuthInfo=socket=…``. See DESIGN.md §6 for the measured facts.

Node names follow this machine's hostname (``vm``, ``vm-n2``, …) so the first node of an allocation,
which a launcher uses as its rendezvous host, resolves to this machine. When the hostname is no valid
Slurm node name or does not resolve, nodes are called ``slurmnode1``, ``slurmnode2``, … and do not
resolve: such tests must rendezvous on 127.0.0.1 (every node's ``NodeAddr``). The controller is
``localhost(127.0.0.1)``, the one name slurmctld accepts besides this machine's hostname.

srun and salloc start at once; sbatch jobs start on the controller's one-second background tick, and not
before ~3 s after it started. Finished jobs stay in ``scontrol show job`` for MINJOBAGE_S (no sacct here).
A test process killed by SIGKILL cannot run close(): its daemons then outlive it.

"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MINJOBAGE_S = 3600
"""Finished jobs stay visible to ``scontrol show job`` this long (no slurmdbd, so no sacct)."""

GRACE_S = 0.5
"""How long a daemon may take to exit after SIGTERM before SIGKILL (they need < 0.1 s when idle)."""

TERMINAL_STATES = frozenset(
    {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"}
)
INHERITED_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCONTROL_")
"""Variables of an enclosing Slurm job (a CI runner inside an allocation) that would confuse our clients."""

VALID_NODE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class SlurmClusterError(RuntimeError):
    """The cluster did not come up, or a client command misbehaved; the message carries the daemon logs."""


def node_names(count: int, hostname: str | None = None) -> list[str]:
    """Names that sort with the resolvable one first: ``<host>``, ``<host>-n2``, … (fallback ``slurmnodeN``)."""
    base = (hostname or socket.gethostname()).split(".")[0]
    if _usable_base(base):
        return [base] + [f"{base}-n{i}" for i in range(2, count + 1)]
    return [f"slurmnode{i}" for i in range(1, count + 1)]


def _usable_base(name: str) -> bool:
    """A node name Slurm accepts (never ``localhost``: the controller crashes) and that resolves here."""
    if not VALID_NODE_NAME.fullmatch(name) or name == "localhost":
        return False
    try:
        socket.gethostbyname(name)
    except OSError:
        return False
    return True


def free_ports(count: int) -> list[int]:
    """Distinct ports the kernel has just handed out (all held open together so none repeats)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def render_conf(root: Path, names: Sequence[str], ports: Sequence[int], cpus: int, hostname: str) -> str:
    """slurm.conf for one controller (``ports[0]``) and one slurmd per name (``ports[1:]``); no accounting."""
    lines = [
        f"ClusterName=ld{ports[0]}",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge.sock'}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool' / '%n'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd-%n.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd-%n.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "MpiDefault=none",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        f"MinJobAge={MINJOBAGE_S}",
        "MailProg=/bin/true",
        "SchedulerParameters=batch_sched_delay=0",
    ]
    for name, port in zip(names, ports[1:], strict=True):
        lines.append(
            f"NodeName={name} NodeHostname={hostname} NodeAddr=127.0.0.1 Port={port} CPUs={cpus} State=UNKNOWN"
        )
    lines.append("PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without an enclosing job's Slurm variables, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(INHERITED_PREFIXES)}
    env.update(extra)
    return env


def _read_proc(pid: int, name: str) -> bytes | None:
    """``/proc/PID/NAME``, or None when the process is gone or not ours to read."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (index 1 is the ppid, 19 the start time)."""
    raw = _read_proc(pid, "stat")
    if raw is None:
        return None
    return raw[raw.rfind(b")") + 2 :].decode().split()


def _process_table() -> dict[int, tuple[int, str]]:
    """pid → (ppid, start time) of every process now, the start time telling a reused pid apart."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            table[int(entry)] = (int(fields[1]), fields[19])
    return table


def _ancestors(pid: int, table: Mapping[int, tuple[int, str]]) -> set[int]:
    """``pid`` and every process above it: never ours to kill, even if they carry the cluster's SLURM_CONF."""
    chain = set()
    while pid > 0 and pid not in chain:
        chain.add(pid)
        pid = table.get(pid, (0, ""))[0]
    return chain


def _descendants(roots: Iterable[int], table: Mapping[int, tuple[int, str]]) -> set[int]:
    """``roots`` and every process below them."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = set(roots), list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def cluster_processes(conf_path: Path, spare: Iterable[int] = ()) -> dict[int, str]:
    """pid → start time of every process of this cluster: those whose environment holds our ``SLURM_CONF``
    (slurmstepd, job steps, clients) and their descendants, as a job may clear its environment (--export=NONE).

    Spared: ``spare`` and its descendants (daemons still to be stopped by SIGTERM, which carry our
    SLURM_CONF too), and this process and its ancestors.
    """
    table = _process_table()
    marker = f"SLURM_CONF={conf_path}".encode()
    found = {pid for pid in table if marker in (_read_proc(pid, "environ") or b"").split(b"\0")}
    found = _descendants(found, table) - _descendants(spare, table) - _ancestors(os.getpid(), table)
    return {pid: table[pid][1] for pid in found}


def kill_exactly(processes: Mapping[int, str]) -> None:
    """SIGKILL each pid through a pidfd, only if it is still the process seen (same start time)."""
    for pid, started in processes.items():
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            fields = _stat_fields(pid)
            if fields is not None and fields[19] == started:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(fd)


def stop_all(popens: Sequence[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM every daemon at once, then SIGKILL whichever has not exited after ``grace_s``."""
    for popen in popens:
        if popen.poll() is None:
            popen.terminate()
    deadline = time.monotonic() + grace_s
    for popen in popens:
        try:
            popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=5)


def tail_logs(paths: Iterable[Path], lines: int = 15) -> str:
    """The last lines of each file, for failure messages."""
    parts = []
    for path in paths:
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        if text:
            parts.append(f"--- {path.name}\n" + "\n".join(text))
    return "\n".join(parts) or "(no daemon logs)"


def listening(port: int) -> bool:
    """Whether a socket here listens on PORT, read from /proc/net so the daemon never sees a probe.

    Clients that find slurmctld not yet listening sleep a whole second before retrying.
    """
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        rows = table.read_text().splitlines()[1:] if table.exists() else []
        for fields in (row.split() for row in rows):
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                return True
    return False


def make_private_dir() -> Path:
    """A fresh directory under the system temp dir, world-executable as munged demands of its socket path."""
    root = Path(tempfile.mkdtemp(prefix="slurm-"))
    root.chmod(0o755)
    return root


@dataclass
class Daemon:
    """One daemon we started, and the file that catches its stderr (it says why a daemon died at start-up)."""

    popen: subprocess.Popen[bytes]
    stderr: Path


class SlurmCluster:
    """munged + slurmctld + ``nodes`` slurmd's on this machine; a context manager that always cleans up.

    ``with SlurmCluster(nodes=2, cpus_per_node=4) as s: s.run(["srun", "-N2", "hostname"])``
    """

    def __init__(self, nodes: int = 2, cpus_per_node: int = 4, ready_timeout_s: float = 15.0) -> None:
        self.node_names = node_names(nodes)
        self.cpus_per_node = cpus_per_node
        self.ready_timeout_s = ready_timeout_s
        self.dir: Path | None = None
        self.conf_path: Path | None = None
        self._daemons: list[Daemon] = []

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> SlurmCluster:
        """Bring every daemon up and wait until all nodes are idle; on any failure, tear down and raise.

        A port taken between free_ports() and the daemon's bind (other workers open ports too) earns one retry.
        """
        try:
            self._start_or_close()
        except SlurmClusterError as error:
            if "Address already in use" not in str(error):
                raise
            self._start_or_close()
        return self

    def _start_or_close(self) -> None:
        """One bring-up attempt that leaves nothing behind when it fails."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        """Write key and config, start munged, slurmctld, then every slurmd at once.

        A slurmd that finds the controller not yet listening retries its registration a second later.
        """
        self.dir = make_private_dir()
        self.conf_path = self.dir / "slurm.conf"
        for sub in ["state", *(f"spool/{name}" for name in self.node_names)]:
            (self.dir / sub).mkdir(mode=0o755, parents=True)
        ports = free_ports(1 + len(self.node_names))
        conf = render_conf(self.dir, self.node_names, ports, self.cpus_per_node, socket.gethostname())
        self.conf_path.write_text(conf)
        deadline = time.monotonic() + self.ready_timeout_s
        self._start_munged(deadline)
        self._spawn(["slurmctld", "-D", "-f", str(self.conf_path)], "slurmctld.stderr")
        self._poll(lambda: listening(ports[0]), deadline, "slurmctld to listen")
        for name in self.node_names:
            self._spawn(["slurmd", "-D", "-N", name, "-f", str(self.conf_path)], f"slurmd-{name}.stderr")
        self._poll(self._all_idle, deadline, f"{len(self.node_names)} idle nodes")

    def _start_munged(self, deadline: float) -> None:
        """A private munged with a fresh key (mode 0400, as munged insists), ready once its socket exists.

        In the foreground munged logs to stderr only, so that is its log file.
        """
        assert self.dir is not None
        key, sock = self.dir / "munge.key", self.dir / "munge.sock"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True, timeout=10)
        key.chmod(0o400)
        argv = ["munged", "-F", f"--socket={sock}", f"--key-file={key}", f"--pid-file={self.dir / 'munged.pid'}"]
        self._spawn([*argv, f"--seed-file={self.dir / 'munged.seed'}"], "munged.log")
        self._poll(sock.exists, deadline, "munged's socket")

    def _spawn(self, argv: list[str], stderr_name: str) -> None:
        """Start one daemon as our child, in its own session (a Ctrl-C to the tests must not half-kill it)."""
        assert self.dir is not None
        stderr = self.dir / stderr_name
        with open(stderr, "wb") as out:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self.client_env(), cwd=self.dir, start_new_session=True,
            )  # fmt: skip
        self._daemons.append(Daemon(popen, stderr))

    def _poll(self, ready: Callable[[], bool], deadline: float, what: str) -> None:
        """Call ``ready()`` every 20 ms until true; raise with the daemon logs at the deadline or a daemon's death."""
        while not ready():
            dead = [d.stderr.stem for d in self._daemons if d.popen.poll() is not None]
            if dead or time.monotonic() > deadline:
                reason = f"{', '.join(dead)} exited" if dead else f"timed out after {self.ready_timeout_s} s"
                raise SlurmClusterError(f"waiting for {what}: {reason}\n{self.logs()}")
            time.sleep(0.02)

    def _all_idle(self) -> bool:
        """Every node registered and idle, as ``sinfo`` reports it."""
        result = self.run(["sinfo", "-h", "-N", "-o", "%T"], timeout=5, check=False)
        states = result.stdout.split()
        return result.returncode == 0 and len(states) == len(self.node_names) and set(states) == {"idle"}

    def logs(self, lines: int = 15) -> str:
        """Tails of the daemon logs (slurmstepd's included), and the stderr of any daemon that died."""
        if self.dir is None:
            return "(cluster not running)"
        dead = [d.stderr for d in self._daemons if d.popen.poll() is not None and d.stderr.suffix != ".log"]
        return tail_logs([*sorted(self.dir.glob("*.log")), *dead], lines)

    def env(self) -> dict[str, str]:
        """Variables to merge into a client's environment so that Slurm commands talk to this cluster."""
        if self.conf_path is None:
            raise SlurmClusterError("cluster not started")
        return {"SLURM_CONF": str(self.conf_path)}

    def client_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A whole environment for a client: ours without an enclosing job's Slurm variables, plus env() and extra."""
        return clean_env({**self.env(), **(extra or {})})

    def run(
        self,
        args: Sequence[str],
        timeout: float = 30,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (``srun``, ``sbatch``…) against this cluster, capturing text output.

        ``env`` is merged over client_env(). ``check`` raises on a non-zero exit, with the output and daemon
        logs; a timeout always raises. Mind that sbatch writes ``slurm-<id>.out`` into ``cwd`` by default.
        """
        result = subprocess.run(
            list(args), env=self.client_env(env), capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, cwd=cwd,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise SlurmClusterError(
                f"{' '.join(args)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}\n"
                f"{self.logs()}"
            )
        return result

    def _job_field(self, job_id: int | str, field: str) -> str:
        """One ``Key=Value`` field of ``scontrol show job`` (kept MinJobAge seconds after the job ends)."""
        text = self.run(["scontrol", "show", "job", "-o", str(job_id)], timeout=10).stdout
        match = re.search(rf"(?:^|\s){field}=(\S+)", text)
        if match is None:
            raise SlurmClusterError(f"no {field} in scontrol output for job {job_id}: {text!r}")
        return match.group(1)

    def job_state(self, job_id: int | str) -> str:
        """The job's state: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED…"""
        return self._job_field(job_id, "JobState")

    def job_exit_code(self, job_id: int | str) -> tuple[int, int]:
        """(exit status, terminating signal) of the batch script, from ``ExitCode=7:0``; sacct needs slurmdbd."""
        status, sig = self._job_field(job_id, "ExitCode").split(":")
        return int(status), int(sig)

    def wait_job(self, job_id: int | str, timeout: float = 60) -> str:
        """Wait until the job reaches a terminal state and return that state; raise after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (state := self.job_state(job_id)) not in TERMINAL_STATES:
            if time.monotonic() > deadline:
                raise SlurmClusterError(f"job {job_id} still {state} after {timeout} s\n{self.logs()}")
            time.sleep(0.1)
        return state

    def close(self) -> None:
        """Stop slurmctld, kill job processes, stop the slurmd's and munged, kill stragglers, remove the directory.

        slurmctld goes first so that killed jobs stir no new RPCs; even so it may wait up to ~3 s for an
        agent still retrying an RPC (e.g. after ``srun --kill-on-bad-exit``), hence its short grace: nothing
        it would save outlives the directory. munged goes last, as every daemon authenticates through it.
        Safe to call twice and after a failed start().
        """
        if self.dir is None:
            return
        conf_path, popens = self.dir / "slurm.conf", [d.popen for d in self._daemons]
        stop_all([p for p in popens if p.args[0] == "slurmctld"], grace_s=GRACE_S)
        kill_exactly(cluster_processes(conf_path, spare=[p.pid for p in popens if p.poll() is None]))
        for name in ("slurmd", "munged"):
            stop_all([p for p in popens if p.args[0] == name], grace_s=GRACE_S)
        kill_exactly(cluster_processes(conf_path))
        shutil.rmtree(self.dir, ignore_errors=True)
        self._daemons = []
        self.dir = self.conf_path = None
