"""Which rank a process is, from whichever launcher started it. Stdlib only (the agent uses it too).

torchrun states it as RANK & co.; OpenMPI's mpirun as OMPI_COMM_WORLD_*; horovodrun as HOROVOD_*.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

SOURCES = {  # torch's name -> the same fact as torchrun, OpenMPI's mpirun and horovodrun state it
    "RANK": ("RANK", "OMPI_COMM_WORLD_RANK", "HOROVOD_RANK"),
    "WORLD_SIZE": ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "HOROVOD_SIZE"),
    "LOCAL_RANK": ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "HOROVOD_LOCAL_RANK"),
    "LOCAL_WORLD_SIZE": ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "HOROVOD_LOCAL_SIZE"),
}


def lookup(env: Mapping[str, str], name: str) -> int | None:
    """``name`` (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) as the first launcher variable that states it."""
    for source in SOURCES[name]:
        value = env.get(source, "")
        if value.isascii() and value.isdigit():
            return int(value)
    return None


def adopt(env: MutableMapping[str, str]) -> None:
    """Under mpirun or horovodrun, set torch's names from theirs (torch reads RANK & co.)."""
    for name in SOURCES:
        value = lookup(env, name)
        if name not in env and value is not None:
            env[name] = str(value)
