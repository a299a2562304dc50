"""``python -m launcher.node.probe``: what a host can run, as one JSON line. Stdlib only, so it answers fast.

``launchdeck doctor`` and the launch preflight run it on every host over ssh (and here, to compare):
interpreter and package versions, visible GPUs, CPU count, and whether the rendezvous port is free.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from pathlib import Path

PACKAGES = ("torch", "deepspeed", "horovod", "launchdeck")


def visible_gpus() -> int:
    """NVIDIA GPUs this process may use, without importing torch."""
    devices = Path("/proc/driver/nvidia/gpus")
    physical = len(list(devices.iterdir())) if devices.is_dir() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return physical
    return min(physical, len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"]))


def cpu_threads(local_ranks: int) -> int:
    """Intra-op threads per rank when ``local_ranks`` share this machine's cores: cores ÷ ranks, at least 1."""
    return max(1, (os.cpu_count() or 1) // local_ranks)


def port_free(port: int) -> bool:
    """Whether a rendezvous server could listen on ``port`` here now (as torch's TCPStore binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def version(package: str) -> str | None:
    from importlib import metadata  # ~25 ms of imports: only when versions are asked for

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def facts(port: int | None = None) -> dict:
    found = {"hostname": socket.gethostname(), "python": platform.python_version(), "executable": sys.executable,
             "gpus": visible_gpus(), "cpus": os.cpu_count() or 1, **{p: version(p) for p in PACKAGES}}
    if port:
        found["port_free"] = port_free(port)
    return found


def main(argv: list[str] | None = None) -> int:
    import argparse  # only as a program: planning imports this module for visible_gpus

    parser = argparse.ArgumentParser(prog="python -m launcher.node.probe", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, help="also check that this TCP port is free")
    args = parser.parse_args(argv)
    print(json.dumps(facts(args.port)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
