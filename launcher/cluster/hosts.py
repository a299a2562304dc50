"""Hosts and hostfiles: parse, validate, filter and format. Pure functions, no I/O but reading files.

Formats: ``deepspeed`` and ``mpi`` (OpenMPI) write ``host slots=N``; ``horovod`` writes ``host:N``.
Reading accepts either form per line, with comments, blank lines and trailing comments (as
DeepSpeed's runner does), and is stricter than DeepSpeed where it is silently wrong: ``slots=0``,
duplicate hosts and names that are not DNS names or IP addresses are errors with the line number.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LaunchdeckError

FORMATS = ("deepspeed", "horovod", "mpi")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")
_SLOTS_LINE = re.compile(r"^(\S+)\s+slots=(\S+)(?:\s+max_slots=\d+)?$")
_COLON_LINE = re.compile(r"^([^\s:]+):(\S+)$")


class HostfileError(LaunchdeckError):
    """A hostfile, host list or node list that cannot be trusted."""


@dataclass(frozen=True)
class Host:
    """A host and its slot count (ranks it may run), as a hostfile line states them."""

    name: str
    slots: int


def check_hostname(name: str, where: str = "") -> str:
    """A DNS name (RFC 1123 labels) or an IP address; anything a shell could misread is refused."""
    prefix = f"{where}: " if where else ""
    if 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split(".")):
        return name  # DNS name (IPv4 addresses pass here too)
    try:
        ipaddress.ip_address(name)  # IPv6
        return name
    except ValueError:
        raise HostfileError(f"{prefix}invalid host name {name!r} (letters, digits, '-', '_' and '.'; "
                            "no leading '-', spaces or shell characters)") from None


def _slots(text: str, where: str) -> int:
    if not (text.isascii() and text.isdigit()):  # str.isdigit() alone takes "²", which int() refuses
        raise HostfileError(f"{where}: slots must be a whole number, got {text!r}")
    if int(text) < 1:
        raise HostfileError(f"{where}: slots={text}: a host needs at least 1 slot")
    return int(text)


def parse(text: str, source: str = "hostfile") -> list[Host]:
    """Hosts in file order; every problem is an error naming ``source:line``."""
    hosts: list[Host] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        match = _SLOTS_LINE.match(line) or _COLON_LINE.match(line)
        if not match:
            raise HostfileError(f"{where}: expected 'host slots=N' or 'host:N', got {line!r}")
        name = check_hostname(match.group(1), where)
        if name in first_line:
            raise HostfileError(f"{where}: duplicate host {name!r} (first on line {first_line[name]})")
        first_line[name] = number
        hosts.append(Host(name, _slots(match.group(2), where)))
    if not hosts:
        raise HostfileError(f"{source}: no hosts")
    return hosts


def read(path: str | Path) -> list[Host]:
    """Parse a hostfile; a missing one is an error, never a silent local run."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HostfileError(f"hostfile not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HostfileError(f"cannot read hostfile {path}: {exc}") from None
    return parse(text, str(path))


def format_hosts(hosts: Iterable[Host], fmt: str) -> str:
    if fmt == "horovod":
        return "".join(f"{h.name}:{h.slots}\n" for h in hosts)
    if fmt in ("deepspeed", "mpi"):
        return "".join(f"{h.name} slots={h.slots}\n" for h in hosts)
    raise HostfileError(f"unknown hostfile format {fmt!r} (known: {', '.join(FORMATS)})")


def from_specs(specs: Iterable[str], default_slots: int) -> list[Host]:
    """``HOST`` or ``HOST:SLOTS`` arguments (``create``)."""
    found: dict[str, Host] = {}
    for spec in specs:
        name, sep, slots = spec.rpartition(":") if ":" in spec else (spec, "", "")
        check_hostname(name, "host")
        if name in found:
            raise HostfileError(f"host: duplicate host {name!r}")
        found[name] = Host(name, _slots(slots, f"host {name}") if sep else default_slots)
    return list(found.values())


def world_size(resources: dict[str, list[int]]) -> int:
    return sum(len(slots) for slots in resources.values())


def changes(before: dict[str, int], after: dict[str, int]) -> dict[str, object]:
    """What differs between two sets of hosts (host → ranks): added, gone, and those whose slots changed."""
    return {"added": [h for h in after if h not in before], "gone": [h for h in before if h not in after],
            "resized": {h: [before[h], after[h]] for h in after if h in before and before[h] != after[h]}}


def resources(hosts: Iterable[Host]) -> dict[str, list[int]]:
    """host → its slot indices, the shape DeepSpeed's include/exclude filters act on."""
    return {h.name: list(range(h.slots)) for h in hosts}


def _parse_filter(text: str, known: dict[str, list[int]], flag: str) -> dict[str, list[int] | None]:
    """``host[:slot,slot]@host…`` → host → slots (None: the whole host)."""
    parsed: dict[str, list[int] | None] = {}
    for part in text.split("@"):
        name, _, slots = part.partition(":")
        check_hostname(name, flag)
        if name not in known:
            raise HostfileError(f"{flag}: host {name!r} is not in the hostfile")
        if not slots:
            parsed[name] = None
            continue
        try:
            wanted = [int(s) for s in slots.split(",")]
        except ValueError:
            raise HostfileError(f"{flag}: bad slot list {slots!r} for {name}") from None
        missing = [s for s in wanted if s not in known[name]]
        if missing:
            raise HostfileError(f"{flag}: {name} has no slot {missing[0]} (slots 0-{len(known[name]) - 1})")
        parsed[name] = wanted
    return parsed


def apply_filters(res: dict[str, list[int]], include: str | None = None,
                  exclude: str | None = None) -> dict[str, list[int]]:
    """DeepSpeed's ``--include``/``--exclude`` semantics (mutually exclusive), hosts keep file order."""
    if include and exclude:
        raise HostfileError("--include and --exclude are mutually exclusive")
    if include:
        chosen = _parse_filter(include, res, "--include")
        result = {h: sorted(set(s if s is not None else res[h])) for h, s in chosen.items()}
        return {h: result[h] for h in res if h in result}
    if exclude:
        dropped = _parse_filter(exclude, res, "--exclude")
        result = {h: [s for s in slots if h not in dropped or (dropped[h] is not None and s not in dropped[h])]
                  for h, slots in res.items()}
        result = {h: s for h, s in result.items() if s}
        if not result:
            raise HostfileError("--exclude leaves no slots")
        return result
    return dict(res)
