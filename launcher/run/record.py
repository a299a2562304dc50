"""The run record: everything needed to see (and repeat) what ran, under ``runs/<id>/``.

strategy.yaml (as resolved), config.json (as rendered), plan.json (exact commands and env),
env.json (the environment the ranks saw, secrets redacted), versions.json, logs/, result.json
(written by the payload) and outcome.json (written by the launcher). What the job reads is written before
it starts; what describes it is written while it starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import LaunchdeckError
from ..files import LOW_SPACE, free_bytes, write_atomic
from ..node import probe
from ..plan.model import LaunchPlan
from ..render import RenderedConfig
from ..spec.catalog import to_yaml

ENV_PREFIXES = ("CUDA_", "NCCL_", "GLOO_", "OMP_", "MKL_", "TORCH", "DS_", "HOROVOD_", "LAUNCHDECK_", "PYTHON",
                "MASTER_", "SLURM_", "LD_LIBRARY_PATH", "PATH", "VIRTUAL_ENV")
SECRET = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH|COOKIE", re.I)
PACKAGES = ("torch", "deepspeed", "transformers", "accelerate", "horovod", "launchdeck")


def create(run_dir: Path) -> None:
    """Make the run directory; refuse one that already holds files (nothing the user had is lost). Its
    ``logs/`` is made exclusively: of two launches given one directory at once, one gets it."""
    taken = f"--run-dir {run_dir} is not empty; choose a new directory"
    if run_dir.exists() and any(run_dir.iterdir()):
        raise LaunchdeckError(taken)
    try:
        (run_dir / "logs").mkdir(parents=True)
    except FileExistsError:
        raise LaunchdeckError(taken) from None
    except OSError as exc:
        raise LaunchdeckError(f"cannot create run directory {run_dir}: {exc.strerror}") from None


def reserve(run_dir: Path) -> bool:
    """Take ``run_dir`` for this run, atomically: False when another launch created it first (two launches
    in the same second choose the same name)."""
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir()
    except FileExistsError:
        return False
    except OSError as exc:
        raise LaunchdeckError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    return True


@contextlib.contextmanager
def unless_started(run_dir: Path) -> Iterator[None]:
    """Until the job starts: when it is refused (a host, the engine's parser), remove what this launch wrote
    into ``run_dir``, which :func:`create` found new or empty; the directory itself goes when it is empty."""
    try:
        yield
    except LaunchdeckError:
        for entry in run_dir.iterdir() if run_dir.is_dir() else ():
            _remove(entry)
        with contextlib.suppress(OSError):
            run_dir.rmdir()
        raise


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


ATTEMPT_PREFIX = "attempt-"
ATTEMPT_INPUTS = ("config.json", "plan.json")


def archive_attempt(run_dir: Path, number: int) -> Path:
    """Before a restart: attempt ``number``'s logs (and the config and plan it ran with) move to
    ``logs/attempt-<number>/``; its progress records go, so the next attempt is judged on its own."""
    logs = run_dir / "logs"
    kept = logs / f"{ATTEMPT_PREFIX}{number}"
    kept.mkdir(parents=True)
    for entry in logs.iterdir():
        if not entry.name.startswith(ATTEMPT_PREFIX):
            os.replace(entry, kept / entry.name)
    for name in ATTEMPT_INPUTS:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, kept / name)
    shutil.rmtree(run_dir / "progress", ignore_errors=True)
    return kept


def restore_inputs(run_dir: Path, number: int) -> None:
    """A restart refused before it started: the record describes attempt ``number`` again (the refused one
    had written its own config and plan)."""
    kept = run_dir / "logs" / f"{ATTEMPT_PREFIX}{number}"
    for name in ATTEMPT_INPUTS:
        if (kept / name).is_file():
            shutil.copy2(kept / name, run_dir / name)


def write_inputs(plan: LaunchPlan, rendered: RenderedConfig) -> None:
    """What the job reads, written before it starts: the rendered config and the plan's files (MPI hostfile)."""
    write_atomic(plan.config_path, json.dumps(rendered.config, indent=2) + "\n")
    for path, text in plan.files.items():
        write_atomic(path, text)


@contextlib.contextmanager
def described(run_dir: Path, rendered: RenderedConfig, plan: LaunchPlan,
              warn: Callable[[str], None]) -> Iterator[None]:
    """Write what describes the run (:func:`write_description`) in a thread while the body starts the job, so
    the record costs the launch nothing. What needs a subprocess (git, the platform) is read first, here: the
    job's teardown kills every process below the launcher. A write that fails is a warning, not the job's
    failure (``warn`` gets one line once the body is done)."""
    facts = {"platform": _platform(), "git_sha": _git_sha(Path(__file__).resolve().parents[2])}
    failed: list[str] = []

    def write() -> None:
        try:
            write_description(run_dir, rendered, plan, facts)
        except LaunchdeckError as exc:
            failed.append(str(exc))

    thread = threading.Thread(target=write, name="run-record", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    for problem in failed:
        warn(f"launchdeck: warning: the run record is incomplete: {problem}")


def write_description(run_dir: Path, rendered: RenderedConfig, plan: LaunchPlan, facts: dict[str, str | None]) -> None:
    """The resolved strategy, the plan, the env the ranks see (secrets redacted), the versions."""
    write_atomic(run_dir / "strategy.yaml", to_yaml(rendered.strategy))
    write_atomic(run_dir / "plan.json", plan.to_json())
    env = {**{k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}, **plan.nodes[0].env}
    write_atomic(run_dir / "env.json", json.dumps(redact(env), indent=2, sort_keys=True) + "\n")
    write_atomic(run_dir / "versions.json", json.dumps(versions(facts), indent=2) + "\n")


def write_outcome(run_dir: Path, outcome: Any) -> None:
    write_atomic(run_dir / "outcome.json", json.dumps(dataclasses.asdict(outcome), indent=2) + "\n")


def finish(run_dir: Path, outcome: Any, failed: bool) -> list[str]:
    """Write ``outcome.json``; the lines to show when that failed, or when a failed run's filesystem is full
    (the likely cause: a checkpoint or a log that did not fit). Never raises: the job is over either way."""
    problems = []
    try:
        write_outcome(run_dir, outcome)
    except (OSError, LaunchdeckError) as exc:
        problems.append(f"launchdeck: warning: outcome.json not written: {exc}")
    free = free_bytes(run_dir) if failed else LOW_SPACE
    if free < LOW_SPACE:
        problems.append(f"launchdeck: notice: the run directory's filesystem is full ({free // 2**20} MiB free "
                        f"at {run_dir}): a checkpoint, a log or the run record may not have been written")
    return problems


def redact(env: dict[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if SECRET.search(k) else v) for k, v in env.items()}


def versions(facts: dict[str, str | None]) -> dict[str, str | None]:
    """Python and the installed packages (read from package metadata: nothing heavy is imported), then
    ``facts`` (the platform and the git SHA, read before the start)."""
    found: dict[str, str | None] = {"python": ".".join(map(str, sys.version_info[:3]))}
    found.update({name: probe.version(name) for name in PACKAGES})
    return {**found, **facts}


def _platform() -> str:
    import platform  # ~2 ms of import, and a `uname -p`: only for the record

    return platform.platform()


def _git_sha(repo: Path) -> str | None:
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}{'-dirty' if dirty else ''}" if sha else None
