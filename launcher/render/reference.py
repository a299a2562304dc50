"""The rendered DeepSpeed JSON of every catalog strategy at a reference size, kept in ``ds_configs/``.

``make configs`` (``python -m launcher.render.reference``) regenerates them; a test fails when they are
stale, so a user can copy a file without installing anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..files import write_atomic
from ..spec import engines
from ..spec.catalog import load_strategy, names
from . import Cluster, render

REFERENCE = Cluster(world_size=8, gpus_per_node=8)


def reference_files() -> dict[str, str]:
    """Relative path → file text, for every DeepSpeed strategy, plain and HF-Trainer flavour."""
    files = {}
    for name in names():
        strategy = load_strategy(name)
        if not engines.get(strategy.engine).native_config:
            continue
        flavours = (("", False),) if strategy.pipeline else (("", False), ("hf/", True))
        for prefix, hf in flavours:
            config = render(strategy, REFERENCE, hf=hf).config
            files[f"{prefix}{name}.json"] = json.dumps(config, indent=2) + "\n"
    return files


def write(directory: Path) -> list[str]:
    """Write every reference file into ``directory``; delete JSON files no strategy produces."""
    files = reference_files()
    for stale in directory.rglob("*.json"):
        if stale.relative_to(directory).as_posix() not in files:
            stale.unlink()
    for relative, text in files.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / relative, text)
    return sorted(files)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "ds_configs")
    for path in write(target):
        print(target / path)
