"""Hosts from a scheduler's environment: SLURM (python-hostlist), PBS and LSF."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .hosts import Host, HostfileError, check_hostname

_COUNTS = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


def expand_nodelist(nodelist: str) -> list[str]:
    """``node[01-04,07]`` → names, by python-hostlist (the library Slurm users already trust)."""
    import hostlist

    try:
        names = hostlist.expand_hostlist(nodelist)
    except hostlist.BadHostlist as exc:
        raise HostfileError(f"bad node list {nodelist!r}: {exc}") from None
    for name in names:
        check_hostname(name, "node list")
    return names


def slurm_counts(text: str, what: str) -> list[int]:
    """Slurm's per-node count lists (``SLURM_TASKS_PER_NODE``, ``SLURM_JOB_CPUS_PER_NODE``): ``8(x4)``, ``2,1``,
    ``2(x3),1`` → one count per node."""
    counts: list[int] = []
    for part in text.split(","):
        match = _COUNTS.match(part.strip())
        if not match:
            raise HostfileError(f"bad {what} {text!r} (expected forms like 8(x4) or 2,1)")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def tasks_per_node(text: str, nodes: int) -> list[int]:
    """``SLURM_TASKS_PER_NODE`` → one slot count per node of the node list."""
    counts = slurm_counts(text, "tasks-per-node")
    if len(counts) != nodes:
        raise HostfileError(f"tasks-per-node {text!r} describes {len(counts)} node(s), the node list has {nodes}")
    if any(c < 1 for c in counts):
        raise HostfileError(f"tasks-per-node {text!r}: every node needs at least 1 slot")
    return counts


def from_slurm(nodelist: str | None, slots: int | None) -> list[Host]:
    nodelist = nodelist or os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if not nodelist:
        raise HostfileError("no node list: pass one or run inside an allocation ($SLURM_JOB_NODELIST)")
    names = expand_nodelist(nodelist)
    if slots is not None:
        counts = [slots] * len(names)
    elif os.environ.get("SLURM_TASKS_PER_NODE"):
        counts = tasks_per_node(os.environ["SLURM_TASKS_PER_NODE"], len(names))
    else:
        raise HostfileError("slots per node unknown: pass --slots N (or set $SLURM_TASKS_PER_NODE)")
    return _unique([Host(n, c) for n, c in zip(names, counts, strict=True)], "node list")


def from_pbs(nodefile: str | None) -> list[Host]:
    """``$PBS_NODEFILE``: one line per slot, hosts repeated."""
    path = nodefile or os.environ.get("PBS_NODEFILE")
    if not path:
        raise HostfileError("no PBS node file: pass one or set $PBS_NODEFILE")
    try:
        names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise HostfileError(f"cannot read PBS node file {path}: {exc.strerror}") from None
    return _count(names, "PBS node file")


def from_lsf() -> list[Host]:
    """``$LSB_MCPU_HOSTS`` (``host n host n``) or ``$LSB_HOSTS`` (hosts repeated per slot)."""
    pairs = os.environ.get("LSB_MCPU_HOSTS", "").split()
    if pairs:
        if len(pairs) % 2 or not all(n.isascii() and n.isdigit() and int(n) > 0 for n in pairs[1::2]):
            raise HostfileError(f"bad $LSB_MCPU_HOSTS {' '.join(pairs)!r} (expected 'host n host n …')")
        hosts = [Host(check_hostname(h, "$LSB_MCPU_HOSTS"), int(n)) for h, n in zip(pairs[::2], pairs[1::2],
                                                                                  strict=True)]
        return _unique(hosts, "$LSB_MCPU_HOSTS")
    names = os.environ.get("LSB_HOSTS", "").split()
    if not names:
        raise HostfileError("neither $LSB_MCPU_HOSTS nor $LSB_HOSTS is set")
    return _count(names, "$LSB_HOSTS")


def _count(names: list[str], source: str) -> list[Host]:
    counts: dict[str, int] = {}
    for name in names:
        counts[check_hostname(name, source)] = counts.get(name, 0) + 1
    return [Host(n, c) for n, c in counts.items()]


def _unique(hosts: list[Host], source: str) -> list[Host]:
    seen = set()
    for h in hosts:
        if h.name in seen:
            raise HostfileError(f"{source}: duplicate host {h.name!r}")
        seen.add(h.name)
    return hosts
