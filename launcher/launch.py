"""From a launch request to a rendered config and a plan: all decisions, no processes.

Resolution order, written once: command line > environment > strategy YAML > defaults. The
accelerator is chosen here (GPUs visible and not ``--cpu`` → one rank per GPU with nccl; otherwise
2 CPU ranks with gloo, fp16 turned into bf16 with a notice).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import cluster_env, hosts, record
from .catalog import load_strategy
from .errors import LaunchdeckError
from .plan import LaunchPlan
from .probe import visible_gpus
from .render import Cluster, RenderedConfig, render
from .resume import find_resume_source
from .strategy import Strategy
from .transports import common, local
from .transports.horovodrun import plan_horovodrun
from .transports.openmpi import plan_openmpi
from .transports.slurm import plan_slurm
from .transports.ssh import plan_pdsh, plan_ssh
from .transports.torchrun import plan_torchrun

DEFAULT_CPU_RANKS = 2
TRANSPORTS = {"ssh": plan_ssh, "pdsh": plan_pdsh, "openmpi": plan_openmpi, "slurm": plan_slurm,
              "horovodrun": plan_horovodrun, "torchrun": plan_torchrun}


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
    hostfile: str | None = None
    include: str | None = None
    exclude: str | None = None
    launcher: str | None = None  # default: ssh with a hostfile, else local
    master_addr: str | None = None
    master_port: int | None = None
    ssh_port: int | None = None
    ssh_key: str | None = None
    network_interface: str | None = None
    env: tuple[str, ...] = ()
    hang_timeout: float = 5.0  # seconds a rank may stay stopped before it is killed (0: never)
    heartbeat_timeout: float = 10.0  # seconds of silence after which a node counts as lost


@dataclass(frozen=True)
class Prepared:
    rendered: RenderedConfig
    plan: LaunchPlan
    notices: list[str] = field(default_factory=list)


def prepare(req: LaunchRequest) -> Prepared:
    """Decide ranks and accelerator, render the strategy, and plan the transport."""
    transport = req.launcher or ("ssh" if req.hostfile else "local")
    found = _cluster_hosts(req, transport)
    if found is None:
        gpus = 0 if req.cpu else visible_gpus()
        nproc = req.nproc or gpus or DEFAULT_CPU_RANKS
        if gpus and nproc > gpus:
            raise LaunchdeckError(f"--nproc {nproc} but only {gpus} GPU(s) are visible; use --cpu to run on CPU")
        cpu, world, per_node = not gpus, nproc, nproc
    else:
        slots = hosts.apply_filters(hosts.resources(found), req.include, req.exclude)
        cpu, world, per_node = req.cpu, hosts.world_size(slots), max(len(s) for s in slots.values())
    strategy, notices = _strategy(req, cpu)
    rendered = render(strategy, Cluster(world, per_node, "cpu" if cpu else "gpu"))
    run_dir = (Path(req.run_dir) if req.run_dir else record.new_run_dir(req.runs_root, strategy.name)).absolute()
    config_path = str(run_dir / "config.json")
    command, env = _command(req, rendered, str(run_dir), config_path, cpu=cpu)
    env.update(common.parse_env(req.env))
    if found is None:
        if cpu:  # cores / local ranks: unset, ranks oversubscribe the cores (DESIGN.md: 3-6x slower)
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // world)))
        if strategy.engine != "horovod":
            plan = local.plan(strategy=strategy.name, engine=strategy.engine, nproc=world, run_dir=str(run_dir),
                              config_path=config_path, command=command, env=env)
            return Prepared(rendered, plan, notices)
        # horovodrun is Horovod's own local launcher too: this machine as its only host
        found, slots, transport = [hosts.Host("localhost", world)], {"localhost": list(range(world))}, "horovodrun"
    master = hosts.check_hostname(req.master_addr, "--master-addr") if req.master_addr else next(iter(slots))
    master = "127.0.0.1" if master == "localhost" else master
    ctx = common.ClusterContext(
        totals={h.name: h.slots for h in found}, slots=slots, command=command,
        env=common.cluster_env({**common.forwarded_env(), **env}, req.network_interface), run_dir=str(run_dir),
        config_path=config_path, strategy=strategy.name, engine=strategy.engine, master_addr=master,
        master_port=common.choose_port(master, str(run_dir), req.master_port), cpu=cpu, ssh_port=req.ssh_port,
        ssh_key=req.ssh_key, network_interface=req.network_interface, hang_timeout=req.hang_timeout,
        heartbeat_timeout=req.heartbeat_timeout,
        extra={"horovodrun": rendered.config.get("horovodrun", [])} if strategy.engine == "horovod" else {})
    return Prepared(rendered, TRANSPORTS[transport](ctx), notices)


def _cluster_hosts(req: LaunchRequest, transport: str) -> list[hosts.Host] | None:
    """The hosts of a multi-host transport (None: this machine only)."""
    if transport == "local":
        if req.include or req.exclude:
            raise LaunchdeckError("--include/--exclude filter a --hostfile")
        return None
    if transport == "slurm":
        if req.hostfile:
            raise LaunchdeckError("--launcher slurm takes its hosts from the allocation; drop --hostfile")
        return cluster_env.from_slurm(None, req.nproc)
    if not req.hostfile:
        raise LaunchdeckError(f"--launcher {transport} needs --hostfile (see: launchdeck hostfile create)")
    return hosts.read(req.hostfile)


def _strategy(req: LaunchRequest, cpu: bool) -> tuple[Strategy, list[str]]:
    overrides = list(req.overrides) + ([f"training.steps={req.steps}"] if req.steps else [])
    strategy = load_strategy(req.strategy, overrides)
    adaptations = cpu_adaptations(strategy) if cpu else []
    if adaptations:
        strategy = load_strategy(req.strategy, [*overrides, *(o for o, _ in adaptations)])
    return strategy, [f"launchdeck: notice: {why}" for _, why in adaptations]


def check_runnable(plan: LaunchPlan) -> None:
    """What this version can plan but not run here: say so before anything starts."""
    if plan.engine == "horovod" and not horovod_built():
        raise LaunchdeckError("Horovod with its compiled PyTorch extension is not installed; `make horovod` builds "
                              "it (render and --dry-run work without it)")
    if not plan.commands:
        raise LaunchdeckError(f"--launcher {plan.transport} only prints the line each node runs; add --dry-run "
                              "(or choose ssh, pdsh, openmpi, slurm or horovodrun to start them from here)")
    for argv in plan.commands:
        program = next(arg for arg in argv if arg != "env" and "=" not in arg)  # past `env NAME=VALUE …`
        if not shutil.which(program):
            raise LaunchdeckError(f"--launcher {plan.transport} needs {program!r}, which is not installed here "
                                  "(or not on PATH)")


def needs_preflight(plan: LaunchPlan) -> bool:
    """Plans that reach other hosts over ssh (Slurm checks its own nodes; one machine needs no ssh)."""
    return bool(plan.remote_shell) and not all(common.is_this_machine(node.host) for node in plan.nodes)


def horovod_built() -> bool:
    """A real Horovod build (its compiled torch extension), not just the importable runner."""
    spec = importlib.util.find_spec("horovod")
    if spec is None or not spec.submodule_search_locations:
        return False
    package = Path(next(iter(spec.submodule_search_locations)))
    return any((package / "torch").glob("mpi_lib_v2*.so"))


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
