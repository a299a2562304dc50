"""Shared by the smoke run and the benchmarks: run a launch, read its result."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAUNCHDECK = [sys.executable, "-m", "launcher"]


def timed(argv: list[str], env: dict | None = None, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    return time.perf_counter() - started, done


def read_result(run_dir: Path) -> dict | None:
    path = run_dir / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def number(value, digits: int = 2) -> str:
    """A measured value for a report table ("-" when there is none)."""
    return "-" if value is None else f"{value:,.{digits}f}"


def write_report(root: Path, markdown: str, data: dict) -> None:
    """``report.md`` for people and ``report.json`` for tools, side by side, and the markdown on stdout."""
    (root / "report.md").write_text(markdown)
    (root / "report.json").write_text(json.dumps(data, indent=2))
    print(markdown)
