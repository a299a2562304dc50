"""Fake hosts for multi-host launcher tests: one Linux network namespace and one sshd per host.

Why: ssh, pdsh, OpenMPI's mpirun, torchrun + gloo and horovodrun must be tested against real TCP
between distinct hosts, and namespaces make such hosts cheap (2 hosts up in well under a second).
Needs root, iproute2, openssh-server/client (and pdsh / openmpi-bin for those launchers).

Shape (see DESIGN.md §5): a bridge ``<prefix>-br`` in the root namespace holds the subnet's ``.1``;
host *i* is namespace ``<prefix>-h<i>`` joined to the bridge by a veth pair whose inside end carries
the bridge's name, ``<prefix>-br``, in every namespace. So one interface name (:attr:`FakeCluster.interface`)
exists on every host *and* on the machine the launcher runs on, as on a real cluster where the launch
host is a node: one ``--network-interface`` value serves gloo, NCCL, mpirun's out-of-band channel
(whose head process runs here) and horovodrun's rendezvous server (which runs here too). Each host's
default route points at the bridge, so a host also reaches every address of the root namespace.
Each host runs ``sshd -D`` in its own UTS namespace with its own hostname (``<prefix>-h<i>``), and
resolves every fake host's name through ``/etc/netns/<ns>/hosts``. The root namespace cannot
resolve those names, so launchers address hosts by IP (:meth:`FakeCluster.hostfile`).

Launchers find this cluster's ssh client settings through :meth:`FakeCluster.env`: its ``PATH``
starts with ``c.bin``, whose ``ssh`` wrapper adds ``-F <ssh_config>``; ``~/.ssh`` is never used.
Measured here (pdsh 2.34, Open MPI 4.1.4, Horovod 0.28.1), every launcher run in the root namespace:

- pdsh: its ssh module runs ``ssh`` through ``PATH`` (there is no ``PDSH_SSH_CMD``), so the wrapper
  is used; it also needs ``PDSH_RCMD_TYPE=ssh`` (Debian's default rcmd is rsh), which :meth:`env`
  sets.  Without ``-S`` pdsh exits 0 even when every ssh failed.
- mpirun: its rsh launcher also runs ``ssh`` through ``PATH``; nothing else is needed, up to 8
  hosts tried: no ``plm_rsh_agent``; ``oob_tcp_if_include`` works with :attr:`FakeCluster.interface`
  because that name exists here as well.
  As root it needs ``--allow-run-as-root`` or ``OMPI_ALLOW_RUN_AS_ROOT=1`` plus
  ``OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1``; :meth:`env` sets the two variables because root is a fact
  of this test machine, not of the launcher.  The remote ``orted`` (``/usr/bin/orted``) is on
  sshd's default ``PATH``.
- horovodrun: runs ``ssh`` through the shell, so ``PATH`` suffices (its own
  ``-o StrictHostKeyChecking=no`` is harmless); pass ``--network-interfaces`` :attr:`FakeCluster.interface`.
- torchrun over ssh: ``GLOO_SOCKET_IFNAME`` = :attr:`FakeCluster.interface`, master = the first host's IP.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SSH_PORT = 22
TEST_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
NETNS_ETC = Path("/etc/netns")
# Fake hosts resolve names only through their hosts file.  The machine's resolver is reachable
# by route but answers nothing (no forwarding), so every unknown name (an AAAA query, the launcher's
# real hostname) cost a 5-10 s timeout and torchrun took 24 s instead of 4; a resolver on the
# host's own loopback, where nothing listens, fails at once.
NO_DNS = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
SSHD = "/usr/sbin/sshd"
SSH = "/usr/bin/ssh"
# Interface names are limited to 15 characters: "<prefix>-v250" must fit.
PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,9}")
MAX_HOSTS = 250
SSHD_START_TIMEOUT_S = 5.0
KILL_TIMEOUT_S = 3.0
POLL_S = 0.02


@dataclass(frozen=True)
class FakeHost:
    """One fake host: its hostname (also the netns name), its address, and the root-side veth."""

    name: str
    ip: str
    netns: str
    veth: str


def subnet_for(index: int) -> ipaddress.IPv4Network:
    """The ``index``-th /24 of 198.18.0.0/15 (a range reserved for tests, never routed outside)."""
    count = 2 ** (24 - TEST_RANGE.prefixlen)
    if not 0 <= index < count:
        raise ValueError(f"subnet index must be in 0..{count - 1}, got {index}")
    return ipaddress.IPv4Network((int(TEST_RANGE.network_address) + 256 * index, 24))


def _run(args: list[str], check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run a setup command; on failure raise with its stderr, which says what went wrong."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} failed (rc {proc.returncode}): {proc.stderr.strip()}")
    return proc


def _owned(name: str, prefix: str) -> bool:
    """Whether a kernel object or directory name belongs to ``prefix`` ("ldt1" must not own "ldt10-h1")."""
    return name.startswith(prefix + "-")


def _netns_names() -> list[str]:
    """Names of all network namespaces (``ip netns list`` prints "name (id: N)")."""
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()]


def _link_names() -> list[str]:
    """Names of the root namespace's links, without the "@peer" suffix that veths carry."""
    lines = _run(["ip", "-o", "link", "show"]).stdout.splitlines()
    return [line.split(":", 2)[1].strip().split("@")[0] for line in lines]


def _netns_pids(netns: str) -> list[int]:
    """PIDs of the processes in a namespace; empty once it is gone."""
    proc = _run(["ip", "netns", "pids", netns], check=False)
    return [int(pid) for pid in proc.stdout.split()]


def _kill_netns_processes(netns: str) -> None:
    """SIGKILL everything in a namespace until nothing is left; processes started over ssh outlive
    their ssh client, so only this guarantees that a test leaves no ranks behind."""
    deadline = time.monotonic() + KILL_TIMEOUT_S
    for _ in range(int(KILL_TIMEOUT_S / POLL_S)):
        pids = _netns_pids(netns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    raise RuntimeError(f"processes {_netns_pids(netns)} in netns {netns} survived SIGKILL")


def cleanup_stale(prefix: str) -> None:
    """Remove what an earlier, crashed run with this prefix left: its processes, links, namespaces,
    ``/etc/netns`` entries and temp dirs.  Veths go before their namespaces because ``ip netns del``
    removes them asynchronously, and a re-created veth of the same name would then clash."""
    namespaces = [ns for ns in _netns_names() if _owned(ns, prefix)]
    for netns in namespaces:
        _kill_netns_processes(netns)
    for link in _link_names():
        if _owned(link, prefix):
            _run(["ip", "link", "del", link], check=False)
    for netns in namespaces:
        _run(["ip", "netns", "del", netns], check=False)
    for path in [*NETNS_ETC.glob(f"{prefix}-*"), *Path(tempfile.gettempdir()).glob(f"{prefix}-cluster-*")]:
        shutil.rmtree(path, ignore_errors=True)


def _addresses_in(network: ipaddress.IPv4Network) -> list[str]:
    """Root-namespace addresses inside ``network``: another cluster using the same subnet would
    make routing ambiguous, so bring-up refuses instead of silently misrouting."""
    out = _run(["ip", "-o", "-4", "addr", "show"]).stdout.split()
    return [word for word in out if "/" in word and _is_in(word, network)]


def _is_in(word: str, network: ipaddress.IPv4Network) -> bool:
    """Whether an "a.b.c.d/n" word of ``ip addr`` output lies in ``network``."""
    try:
        return ipaddress.IPv4Interface(word).ip in network
    except ValueError:
        return False


def _port_open(ip: str, port: int) -> bool:
    """One short TCP connect from the root namespace: True once sshd listens."""
    try:
        with socket.create_connection((ip, port), timeout=0.2):
            return True
    except OSError:
        return False


class FakeCluster:
    """``n_hosts`` fake hosts with sshd, torn down completely on exit (also after a failed start).

    ``prefix`` (letters/digits, ≤ 10 characters) namespaces every kernel object and directory, and
    ``subnet`` picks the /24 of 198.18.0.0/15 (:func:`subnet_for`), so parallel test workers with
    their own prefix and subnet never clash.  One live cluster per prefix: :meth:`start` first
    removes whatever carries the prefix (:func:`cleanup_stale`).  Attributes: ``hosts`` (:class:`FakeHost`),
    ``interface`` (same name inside every host), ``network``, ``gateway`` (the bridge's address in the
    root namespace), and after start ``dir`` (keys, configs, sshd logs) and ``bin`` (the ssh wrapper).
    """

    def __init__(self, n_hosts: int = 2, prefix: str = "ldt0", subnet: int = 0) -> None:
        if not PREFIX_RE.fullmatch(prefix):
            raise ValueError(f"prefix must match {PREFIX_RE.pattern} (names ≤ 15 chars), got {prefix!r}")
        if not 1 <= n_hosts <= MAX_HOSTS:
            raise ValueError(f"n_hosts must be in 1..{MAX_HOSTS}, got {n_hosts}")
        self.prefix = prefix
        self.network = subnet_for(subnet)
        self.gateway = str(self.network.network_address + 1)
        self.bridge = f"{prefix}-br"
        self.interface = self.bridge  # the same name in every host namespace: see the module doc
        self.hosts = [self._host(i) for i in range(1, n_hosts + 1)]
        self._dir: Path | None = None
        self._sshd: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def dir(self) -> Path:
        """The cluster's 0755 temp dir: keys, ``ssh_config``, ``known_hosts``, sshd config and logs."""
        if self._dir is None:
            raise RuntimeError("cluster not started")
        return self._dir

    @property
    def bin(self) -> Path:
        """Directory with the ``ssh`` wrapper; put it first on ``PATH`` (:meth:`env` does)."""
        return self.dir / "bin"

    def _host(self, i: int) -> FakeHost:
        """Host ``i`` (from 1) gets address ``.i+1``; its name is both its hostname and netns name."""
        name = f"{self.prefix}-h{i}"
        return FakeHost(name, str(self.network.network_address + 1 + i), name, f"{self.prefix}-v{i}")

    def __enter__(self) -> FakeCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Bring every host up and wait until each sshd accepts connections; on any failure tear
        down what was made, so a caller never has to clean up half a cluster."""
        try:
            cleanup_stale(self.prefix)
            if used := _addresses_in(self.network):
                raise RuntimeError(f"subnet {self.network} already in use here ({used}); pick another index")
            self._write_files()
            self._make_bridge()
            for host in self.hosts:
                self._make_host(host)
            for host in self.hosts:
                self._spawn_sshd(host)
            for host in self.hosts:
                self._wait_sshd(host)
        except BaseException:
            self.close()
            raise

    # --- files: keys, configs, the ssh wrapper -------------------------------------------------

    def _write_files(self) -> None:
        """Keys and configs live in a 0755 dir under the system temp dir: pytest's tmp_path is not
        traversable by every user, and sshd and ssh only need it readable."""
        self._dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-cluster-"))
        self.dir.chmod(0o755)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        for key in ("host_key", "client_key"):
            comment = f"{self.prefix}-{key}"
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(self.dir / key)])
        (self.dir / "authorized_keys").write_text((self.dir / "client_key.pub").read_text())
        host_key = " ".join((self.dir / "host_key.pub").read_text().split()[:2])
        names = ",".join(f"{h.ip},{h.name}" for h in self.hosts)
        (self.dir / "known_hosts").write_text(f"{names} {host_key}\n")
        (self.dir / "ssh_config").write_text(self._ssh_config())
        (self.dir / "sshd_config").write_text(self._sshd_config())
        for host in self.hosts:
            etc = NETNS_ETC / host.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(self._hosts_file())
            (etc / "resolv.conf").write_text(NO_DNS)
        self._write_wrapper()

    def _ssh_config(self) -> str:
        """Client settings that never prompt, never touch ~/.ssh, and never share a ControlMaster
        socket (on a shared filesystem it leaks across namespaces)."""
        return (
            "Host *\n  User root\n"
            f"  IdentityFile {self.dir / 'client_key'}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.dir / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n  UpdateHostKeys no\n  BatchMode yes\n"
            "  ControlMaster no\n  ControlPath none\n  ConnectTimeout 5\n  LogLevel ERROR\n"
        )

    def _sshd_config(self) -> str:
        """One config for every host's sshd.  MaxStartups is raised because the default dropped
        17 of 60 concurrent connections; StrictModes is off because the temp dir's parent is
        world-writable."""
        return (
            f"Port {SSH_PORT}\nListenAddress 0.0.0.0\n"
            f"HostKey {self.dir / 'host_key'}\nAuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "PidFile none\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nMaxStartups 200\nMaxSessions 200\n"
            "UseDNS no\nPrintMotd no\nPrintLastLog no\nX11Forwarding no\n"
        )

    def _hosts_file(self) -> str:
        """Every host resolves each fake name, its own included, to that host's address:
        with only loopback for its own name, gloo and Horovod pick 127.0.0.1 and hang."""
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        return "\n".join(lines + [f"{h.ip} {h.name}" for h in self.hosts]) + "\n"

    def _write_wrapper(self) -> None:
        """``bin/ssh`` adds this cluster's client config to every ssh call a launcher makes."""
        self.bin.mkdir(mode=0o755)
        wrapper = self.bin / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {SSH} -F {shlex.quote(str(self.dir / "ssh_config"))} "$@"\n')
        wrapper.chmod(0o755)

    # --- network -------------------------------------------------------------------------------

    def _make_bridge(self) -> None:
        """The bridge holds the gateway address, so the root namespace (where launchers run)
        reaches every host; with STP off its ports forward at once."""
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.gateway}/{self.network.prefixlen}", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])

    def _make_host(self, host: FakeHost) -> None:
        """A namespace whose interface (named like the bridge) is created directly inside it, bridged,
        addressed, with ``lo`` up and a default route via the bridge."""
        ns = ["ip", "-n", host.netns]
        _run(["ip", "netns", "add", host.netns])
        _run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", self.interface, "netns", host.netns])
        _run(["ip", "link", "set", host.veth, "master", self.bridge, "up"])
        _run([*ns, "addr", "add", f"{host.ip}/{self.network.prefixlen}", "dev", self.interface])
        _run([*ns, "link", "set", self.interface, "up"])
        _run([*ns, "link", "set", "lo", "up"])
        _run([*ns, "route", "add", "default", "via", self.gateway])

    # --- sshd ----------------------------------------------------------------------------------

    def _spawn_sshd(self, host: FakeHost) -> None:
        """sshd in the host's netns and in a UTS namespace of its own, named after the host.  Both
        ``ip netns exec`` and ``unshare`` (without --fork) exec, and ``sh`` execs sshd, so the Popen's
        PID is sshd's: it is killed through this Popen, never through a pidfile (PIDs wrap fast)."""
        log = self.dir / f"sshd-{host.name}.log"
        script = f"hostname {host.name} && exec {SSHD} -D -f {self.dir / 'sshd_config'} -E {log}"
        with open(log, "ab") as out:
            self._sshd[host.name] = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, "unshare", "--uts", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

    def _wait_sshd(self, host: FakeHost) -> None:
        """Poll the port from the root namespace (bounded in time and count) so the first ssh of a
        test never races sshd's start; fail with sshd's own log, which says why it did not start."""
        proc = self._sshd[host.name]
        deadline = time.monotonic() + SSHD_START_TIMEOUT_S
        for _ in range(int(SSHD_START_TIMEOUT_S / POLL_S)):
            if _port_open(host.ip, SSH_PORT):
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
        log = (self.dir / f"sshd-{host.name}.log").read_text(errors="replace").strip()
        state = f"exited rc {proc.returncode}" if proc.poll() is not None else f"silent for {SSHD_START_TIMEOUT_S} s"
        raise RuntimeError(f"sshd of {host.name} ({host.ip}) does not accept connections ({state}); its log:\n{log}")

    def start_sshd(self, host: FakeHost) -> None:
        """(Re)start one host's sshd, e.g. after :meth:`stop_sshd`, and wait until it accepts."""
        self.stop_sshd(host)
        self._spawn_sshd(host)
        self._wait_sshd(host)

    def stop_sshd(self, host: FakeHost) -> None:
        """Kill one host's sshd listener so the host looks unreachable (connection refused).
        Sessions already open, and what they started, keep running."""
        proc = self._sshd.pop(host.name, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait(timeout=KILL_TIMEOUT_S)

    # --- use -----------------------------------------------------------------------------------

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for launcher subprocesses (``base`` defaults to ``os.environ``): ``PATH``
        starts with :attr:`bin`, plus the pdsh and Open MPI settings explained in the module doc."""
        env = dict(os.environ if base is None else base)
        env.update(
            PATH=f"{self.bin}{os.pathsep}{env.get('PATH', os.defpath)}",
            PDSH_RCMD_TYPE="ssh",
            OMPI_ALLOW_RUN_AS_ROOT="1",
            OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        )
        return env

    def hostfile(self, slots: int) -> str:
        """DeepSpeed-format hostfile text, by IP: the root namespace cannot resolve the fake names."""
        return "".join(f"{h.ip} slots={slots}\n" for h in self.hosts)

    def ssh(self, host: FakeHost, command: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a shell command on a host through the wrapper (rc 255: ssh itself failed)."""
        return subprocess.run(
            [str(self.bin / "ssh"), host.ip, command],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=self.env(),
        )

    def pids(self, host: FakeHost) -> list[int]:
        """Live processes on a host, without its sshd listener.  Open ssh sessions' own sshd
        processes and shells are included (they linger a few ms after the ssh client exits)."""
        proc = self._sshd.get(host.name)
        listener = proc.pid if proc is not None and proc.poll() is None else None
        return [pid for pid in _netns_pids(host.netns) if pid != listener]

    # --- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove everything this cluster made, in an order that works after a partial start and
        when called twice: processes, sshd children, veths (before ``ip netns del``, which removes
        them asynchronously), namespaces, bridge, ``/etc/netns`` entries, the temp dir. Every step is
        tried even when one fails; the first failure is raised at the end."""
        namespaces = set(_netns_names())
        links = set(_link_names())
        steps = [(_kill_netns_processes, h.netns) for h in self.hosts if h.netns in namespaces]
        steps += [(self.stop_sshd, h) for h in self.hosts]
        for host in self.hosts:
            steps += [(_run, ["ip", "link", "del", host.veth])] if host.veth in links else []
            steps += [(_run, ["ip", "netns", "del", host.netns])] if host.netns in namespaces else []
            steps.append((shutil.rmtree, NETNS_ETC / host.netns, True))
        steps += [(_run, ["ip", "link", "del", self.bridge])] if self.bridge in links else []
        steps += [(shutil.rmtree, self._dir, True)] if self._dir is not None else []
        errors = []
        for step, *args in steps:
            try:
                step(*args)
            except Exception as exc:  # keep tearing down; report afterwards
                errors.append(exc)
        if errors:
            raise errors[0]
