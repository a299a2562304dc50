"""From a launch request to a rendered config and a plan: all decisions, no processes.

Resolution order, written once: command line > environment > strategy YAML > defaults. The
accelerator is chosen here (GPUs visible and not ``--cpu`` → one rank per GPU with nccl; otherwise
2 CPU ranks with gloo, fp16 turned into bf16 with a notice).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import record
from .catalog import load_strategy
from .errors import LaunchdeckError
from .plan import LaunchPlan
from .render import Cluster, RenderedConfig, render
from .resume import find_resume_source
from .strategy import Strategy
from .transports import local

DEFAULT_CPU_RANKS = 2


@dataclass(frozen=True)
class LaunchRequest:
    strategy: str
    overrides: tuple[str, ...] = ()
    nproc: int | None = None
    cpu: bool = False
    steps: int | None = None
    model: str = "tiny"
    data: str | None = None
    seq_len: int | None = None
    run_dir: str | None = None
    runs_root: str = "runs"
    save_every: int = 0
    resume: str | None = None
    crash_at: str | None = None
    script: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prepared:
    rendered: RenderedConfig
    plan: LaunchPlan
    notices: list[str] = field(default_factory=list)


def visible_gpus() -> int:
    """NVIDIA GPUs this process may use, without importing torch."""
    devices = Path("/proc/driver/nvidia/gpus")
    physical = len(list(devices.iterdir())) if devices.is_dir() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return physical
    return min(physical, len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"]))


def prepare(req: LaunchRequest) -> Prepared:
    gpus = 0 if req.cpu else visible_gpus()
    nproc = req.nproc or gpus or DEFAULT_CPU_RANKS
    if gpus and nproc > gpus:
        raise LaunchdeckError(f"--nproc {nproc} but only {gpus} GPU(s) are visible; use --cpu to run on CPU")
    overrides = list(req.overrides) + ([f"training.steps={req.steps}"] if req.steps else [])
    strategy, notices = load_strategy(req.strategy, overrides), []
    if not gpus:
        adaptations = cpu_adaptations(strategy)
        if adaptations:
            strategy = load_strategy(req.strategy, [*overrides, *(o for o, _ in adaptations)])
            notices = [f"launchdeck: notice: {why}" for _, why in adaptations]
    if strategy.engine == "horovod":
        raise LaunchdeckError("launching the horovod engine is not supported yet (render works: "
                              "launchdeck render horovod -n N)")
    rendered = render(strategy, Cluster(nproc, nproc, "gpu" if gpus else "cpu"))
    run_dir = Path(req.run_dir) if req.run_dir else record.new_run_dir(req.runs_root, strategy.name)
    config_path = str((run_dir / "config.json").absolute())
    command, env = _command(req, rendered, str(run_dir.absolute()), config_path, cpu=not gpus)
    threads = None if gpus else max(1, (os.cpu_count() or 1) // nproc)
    plan = local.plan(strategy=strategy.name, engine=strategy.engine, nproc=nproc, run_dir=str(run_dir.absolute()),
                      config_path=config_path, command=command, env=env, threads=threads)
    return Prepared(rendered, plan, notices)


def cpu_adaptations(strategy: Strategy) -> list[tuple[str, str]]:
    """What a CPU run must change (override, reason): features whose kernels exist only on GPUs."""
    changes = []
    if strategy.training.precision == "fp16":
        changes.append(("training.precision=bf16", "fp16 is not supported on CPU; training in bf16 instead"))
    zero = strategy.zero
    for knob, label in (("quantized_weights", "qwZ"), ("quantized_gradients", "qgZ")):
        if zero is not None and getattr(zero, knob):
            changes.append((f"zero.{knob}=false", f"ZeRO++ {label} (zero.{knob}) has no CPU kernel; off on CPU"))
    return changes


def _command(req: LaunchRequest, rendered: RenderedConfig, run_dir: str, config_path: str,
             cpu: bool) -> tuple[list[str], dict[str, str]]:
    s = rendered.strategy
    env = {"LAUNCHDECK_CONFIG": config_path, "LAUNCHDECK_ENGINE": s.engine, "LAUNCHDECK_STRATEGY": s.name,
           "LAUNCHDECK_RUN_DIR": run_dir}
    if cpu:
        env["DS_ACCELERATOR"] = "cpu"
    if req.script:
        script = list(req.script)
        if s.engine == "deepspeed" and "--deepspeed_config" not in script:
            script += ["--deepspeed_config", config_path]
        return script, env
    command = ["-m", "launcher.train", "--engine", s.engine, "--config", config_path, "--strategy", s.name,
               "--steps", str(s.training.steps), "--log-interval", str(s.training.log_interval),
               "--model", req.model, "--run-dir", run_dir, "--save-every", str(req.save_every)]
    command += ["--cpu"] if cpu else []
    for flag, value in (("--data", req.data), ("--seq-len", req.seq_len), ("--crash-at", req.crash_at)):
        if value is not None:
            command += [flag, str(value)]
    if req.resume:
        command += ["--resume-from", str(find_resume_source(req.resume, req.runs_root, s.name))]
    return command, env
