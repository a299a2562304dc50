"""From a launch request to a rendered config and a plan: every decision, no processes.

Resolution order, written once: command line > environment > strategy YAML > defaults. The
accelerator is chosen here (GPUs visible and not ``--cpu`` → one rank per GPU with nccl; otherwise
2 CPU ranks with gloo, fp16 turned into bf16 with a notice).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import entrypoints
from ..cluster import hosts, schedulers
from ..data import corpus
from ..errors import LaunchdeckError, RenderError
from ..node import extensions, progress
from ..node.probe import cpu_threads, visible_gpus
from ..render import Cluster, RenderedConfig, render
from ..render.batch import data_parallel_size, solve
from ..spec import engines, models
from ..spec.catalog import load_strategy
from ..spec.strategy import Strategy
from .model import PLACED_BY_CLUSTER, LaunchPlan
from .request import LaunchRequest, with_steps
from .resume import find_resume_source
from .transports import common, planner

DEFAULT_CPU_RANKS = 2
LOCAL_HOST = "localhost"


@dataclass(frozen=True)
class Prepared:
    """A request, decided: the rendered config, the plan, and the notices to show before anything runs."""

    rendered: RenderedConfig
    plan: LaunchPlan
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Shape:
    """Where the ranks go: host -> slot indices (hostfile order), and whether they run on CPUs."""

    totals: dict[str, int]
    slots: dict[str, list[int]]
    cpu: bool
    here: bool  # every rank on this machine (no hostfile, no scheduler)

    @property
    def world_size(self) -> int:
        return sum(len(s) for s in self.slots.values())


def prepare(req: LaunchRequest) -> Prepared:
    """Decide ranks and accelerator, render the strategy, and plan the transport."""
    transport = transport_of(req)
    shape = _shape(req, transport)
    check_restarts(req, len(shape.slots))
    strategy, notices = _strategy(req, shape.cpu)
    spec = engines.get(strategy.engine)
    if transport == "local" and spec.local_launcher != "torchrun":
        transport = spec.local_launcher  # horovodrun is Horovod's own local launcher too
    per_node = max(len(s) for s in shape.slots.values())
    rendered = render(strategy, Cluster(shape.world_size, per_node, "cpu" if shape.cpu else "gpu"))
    run_dir = (Path(req.run_dir) if req.run_dir else new_run_dir(req.runs_root, strategy.name)).absolute()
    if req.min_nodes is not None:
        check_shrinking(rendered, req.min_nodes, shape.slots)
    ctx = _context(req, transport, shape, rendered, str(run_dir))
    return Prepared(rendered, planner(transport)(ctx), notices)


def transport_of(req: LaunchRequest) -> str:
    """--launcher, else ssh with a hostfile, else this machine ("local")."""
    return req.launcher or ("ssh" if req.hostfile else "local")


def _shape(req: LaunchRequest, transport: str) -> _Shape:
    if req.ray_address and transport != "ray":
        raise LaunchdeckError("--ray-address names the Ray cluster of --launcher ray")
    if transport == "ray":
        return _ray_shape(req)
    return _local_shape(req) if transport == "local" else _cluster_shape(req, transport)


def _ray_shape(req: LaunchRequest) -> _Shape:
    """--launcher ray: --nproc workers (default 2), wherever Ray places them; one GPU each unless --cpu."""
    if req.hostfile or req.include or req.exclude:
        raise LaunchdeckError("--launcher ray: Ray places the workers on its own nodes; drop --hostfile, "
                              "--include and --exclude")
    if req.master_addr or req.master_port:
        raise LaunchdeckError("--launcher ray: rank 0's worker picks the rendezvous on its node; drop "
                              "--master-addr/--master-port")
    check_ray_address(req.ray_address)
    world = req.nproc or DEFAULT_CPU_RANKS
    return _Shape({PLACED_BY_CLUSTER: world}, {PLACED_BY_CLUSTER: list(range(world))}, cpu=req.cpu, here=False)


def check_ray_address(text: str | None) -> None:
    """``auto`` (or none: the cluster this machine is a node of), or the head's HOST:PORT."""
    if text in (None, "auto"):
        return
    host, sep, port = text.rpartition(":")
    if "://" in text or not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise LaunchdeckError(f"--ray-address {text!r}: expected auto or the head's HOST:PORT (its GCS port, "
                              "6379 by default; Ray Client's ray:// is not used)")
    hosts.check_hostname(host, "--ray-address")


def _local_shape(req: LaunchRequest) -> _Shape:
    """This machine: one rank per visible GPU (or --nproc of them), else 2 CPU ranks."""
    if req.include or req.exclude:
        raise LaunchdeckError("--include/--exclude filter a --hostfile")
    if req.master_addr:
        raise LaunchdeckError("--master-addr applies across hosts (--hostfile or a scheduler); a job on this "
                              "machine meets on 127.0.0.1")
    gpus = 0 if req.cpu else visible_gpus()
    nproc = req.nproc or gpus or DEFAULT_CPU_RANKS
    if gpus and nproc > gpus:
        raise LaunchdeckError(f"--nproc {nproc} but only {gpus} GPU(s) are visible; use --cpu to run on CPU")
    return _Shape({LOCAL_HOST: nproc}, {LOCAL_HOST: list(range(nproc))}, cpu=not gpus, here=True)


def _cluster_shape(req: LaunchRequest, transport: str) -> _Shape:
    """The hosts of a multi-host transport, from the Slurm allocation or the hostfile, filtered."""
    if transport == "slurm" and req.hostfile:
        raise LaunchdeckError("--launcher slurm takes its hosts from the allocation; drop --hostfile")
    if transport != "slurm" and not req.hostfile:
        raise LaunchdeckError(f"--launcher {transport} needs --hostfile (see: launchdeck hostfile create)")
    found = schedulers.from_slurm(None, req.nproc) if transport == "slurm" else hosts.read(req.hostfile)
    slots = hosts.apply_filters(hosts.resources(found), req.include, req.exclude)
    return _Shape({h.name: h.slots for h in found}, slots, cpu=req.cpu, here=False)


def check_restarts(req: LaunchRequest, nodes: int) -> None:
    """--max-restarts resumes the payload from a checkpoint; --min-nodes leaves nodes of a hostfile out."""
    if req.max_restarts and not req.script and not req.save_every:
        raise LaunchdeckError("--max-restarts needs --save-every K: a restart resumes from this run's latest "
                              "complete checkpoint")
    if req.min_nodes is None:
        return
    if not req.max_restarts:
        raise LaunchdeckError("--min-nodes says where a restart may run; add --max-restarts N")
    if not req.hostfile:
        raise LaunchdeckError("--min-nodes leaves nodes of a hostfile out; it needs --hostfile (Slurm places a "
                              "job on the nodes of its allocation itself)")
    if req.include:
        raise LaunchdeckError("--min-nodes leaves nodes out with --exclude; give the hosts to avoid with "
                              "--exclude instead of --include")
    if req.min_nodes > nodes:
        raise LaunchdeckError(f"--min-nodes {req.min_nodes} but the job has {nodes} node(s) (after "
                              "--include/--exclude)")


def check_shrinking(rendered: RenderedConfig, min_nodes: int, slots: dict[str, list[int]]) -> None:
    """The global batch can be kept at every node count from ``min_nodes`` up (nodes of equal size: with
    unequal ones it depends on which are left, and a restart refuses the one that cannot in one line)."""
    sizes = {len(s) for s in slots.values()}
    if len(sizes) != 1:
        return
    per_node, wanted = sizes.pop(), rendered.global_batch
    training = dataclasses.replace(rendered.strategy.training, global_batch=wanted, grad_accum=None)
    stages = rendered.strategy.pipeline.stages if rendered.strategy.pipeline else 1
    for nodes in range(min_nodes, len(slots)):
        try:
            solve(training, data_parallel_size(nodes * per_node, stages))
        except RenderError as exc:
            raise LaunchdeckError(f"--min-nodes {min_nodes}: at {nodes} node(s) the global batch {wanted} cannot "
                                  f"be kept: {exc}") from None


def _strategy(req: LaunchRequest, cpu: bool) -> tuple[Strategy, list[str]]:
    return strategy_for(req.strategy, with_steps(req.overrides, req.steps), cpu)


def strategy_for(ref: str, overrides: list[str], cpu: bool) -> tuple[Strategy, list[str]]:
    """The strategy as ranks will run it: on CPU with what a CPU run changes applied; and the notices."""
    strategy = load_strategy(ref, overrides)
    adaptations = cpu_adaptations(strategy) if cpu else []
    if adaptations:
        strategy = load_strategy(ref, [*overrides, *(o for o, _ in adaptations)])
    return strategy, [f"launchdeck: notice: {why}" for _, why in adaptations]


def cpu_adaptations(strategy: Strategy) -> list[tuple[str, str]]:
    """What a CPU run must change (override, reason): fp16 for every engine, then the engine's own."""
    changes = []
    if strategy.training.precision == "fp16":
        changes.append(("training.precision=bf16", "fp16 is not supported on CPU; training in bf16 instead"))
    return changes + engines.get(strategy.engine).cpu_changes(strategy)


def _context(req: LaunchRequest, transport: str, shape: _Shape, rendered: RenderedConfig,
             run_dir: str) -> common.ClusterContext:
    """Everything the transport's planner needs, with the env every rank gets and the rendezvous chosen."""
    config_path = str(Path(run_dir) / "config.json")
    command, env = rank_command(req, rendered, run_dir, config_path, cpu=shape.cpu)
    env.update(common.parse_env(req.env))
    if shape.here and shape.cpu:  # unset, ranks oversubscribe the cores and crawl (3-6x slower)
        env.setdefault("OMP_NUM_THREADS", str(cpu_threads(shape.world_size)))
    if shape.here and extensions.ENV not in os.environ:  # this interpreter's own C++ op builds
        env.setdefault(extensions.ENV, extensions.build_root())
    if transport != "local":
        env = {**common.forwarded_env(), **env}  # what reaches the ranks through a transport: stated explicitly
    rendezvous = hosts.check_hostname(req.master_addr, "--master-addr") if req.master_addr else next(iter(shape.slots))
    master = "127.0.0.1" if rendezvous == LOCAL_HOST else rendezvous
    return common.ClusterContext(
        totals=shape.totals, slots=shape.slots, command=command, env=common.cluster_env(env, req.network_interface),
        run_dir=run_dir, config_path=config_path, strategy=rendered.strategy.name, engine=rendered.engine,
        master_addr=master, master_port=common.choose_port(master, run_dir, req.master_port, req.attempt),
        rendezvous_host=rendezvous, cpu=shape.cpu, ssh_port=req.ssh_port, ssh_key=req.ssh_key,
        network_interface=req.network_interface, hang_timeout=req.hang_timeout,
        heartbeat_timeout=req.heartbeat_timeout, stall_timeout=req.stall_timeout, max_restarts=req.max_restarts,
        min_nodes=req.min_nodes, ray_address=req.ray_address, ray_runner=engines.get(rendered.engine).ray_runner,
        extra={"horovodrun": rendered.config.get("horovodrun", []), "engine_env": rendered.config.get("env", {})})


def rank_command(req: LaunchRequest, rendered: RenderedConfig, run_dir: str, config_path: str,
                 cpu: bool) -> tuple[list[str], dict[str, str]]:
    """What every rank runs (the payload, or the user's script) and launchdeck's own variables for it."""
    s, spec = rendered.strategy, engines.get(rendered.engine)
    env = {"LAUNCHDECK_CONFIG": config_path, "LAUNCHDECK_ENGINE": s.engine, "LAUNCHDECK_STRATEGY": s.name,
           "LAUNCHDECK_RUN_DIR": run_dir}
    if req.max_restarts:  # which attempt this is: launcher.run.restarts counts them
        env["LAUNCHDECK_ATTEMPT"] = str(req.attempt)
    if req.stall_timeout != 0:  # where ranks keep their progress records (launcher.node.progress)
        env[progress.ENV] = str(Path(run_dir) / "progress")
    if cpu:
        env["DS_ACCELERATOR"] = "cpu"
    if req.script and req.measure_memory:
        raise LaunchdeckError("--measure-memory measures launchdeck's payload; it cannot measure your script")
    if req.script:
        script = list(req.script)
        if spec.config_flag and spec.config_flag not in script:
            script += [spec.config_flag, config_path]
        return script, env
    if spec.payload is None:
        raise LaunchdeckError(f"engine {s.engine} has no payload here; run your own script: launchdeck launch "
                              f"{s.name} -- SCRIPT ARGS…")
    return payload_command(req, rendered, run_dir, config_path, cpu), env


def payload_command(req: LaunchRequest, rendered: RenderedConfig, run_dir: str, config_path: str,
                    cpu: bool) -> list[str]:
    """``-m launcher.payload.train …`` with the strategy's steps and the request's payload options."""
    s = rendered.strategy
    command = ["-m", entrypoints.PAYLOAD, "--engine", s.engine, "--config", config_path, "--strategy", s.name,
               "--steps", str(s.training.steps), "--log-interval", str(s.training.log_interval),
               "--model", req.model, "--run-dir", run_dir, "--save-every", str(req.save_every)]
    command += ["--data-workers", str(req.data_workers), "--prefetch", str(req.prefetch)]
    command += ["--cpu"] if cpu else []
    command += ["--measure-memory"] if req.measure_memory else []
    command += ["--auto-resume"] if req.max_restarts else []  # torchrun's own restarts (elastic plans) too
    for flag, value in (("--data", req.data), ("--seq-len", req.seq_len), ("--crash-at", req.crash_at),
                        ("--stall-at", req.stall_at)):
        if value is not None:
            command += [flag, str(value)]
    for flag, drill in (("--crash-at", req.crash_at), ("--stall-at", req.stall_at)):
        check_drill(flag, drill, rendered.cluster.world_size)
    if req.data is not None and (problem := corpus.problem(req.data)):
        raise LaunchdeckError(problem)
    spec = engines.get(s.engine)
    if spec.model_check:  # the engine splits the model some way (tensor parallelism): the payload's must allow it
        spec.load("model_check")(rendered, models.preset(req.model))
    if req.resume:
        command += ["--resume-from", str(find_resume_source(req.resume, req.runs_root, s.name))]
    return command


def check_drill(flag: str, text: str | None, world_size: int) -> None:
    """A fault drill's RANK:STEP names a rank of this job and a step from 1 (--crash-at may add ``:save``:
    in the middle of that step's checkpoint)."""
    phase = r"(:save)?" if flag == "--crash-at" else ""
    found = re.fullmatch(r"(\d+):(\d+)" + phase, text or "", re.ASCII)
    valid = found is not None and int(found[1]) < world_size and int(found[2]) >= 1
    if text is not None and not valid:
        form = "RANK:STEP[:save]" if phase else "RANK:STEP"
        raise LaunchdeckError(f"{flag} {text!r}: expected {form} with RANK below the world size {world_size} "
                              "and STEP from 1")


def new_run_dir(root: str | Path, strategy: str) -> Path:
    """``root/<UTC timestamp>-<strategy>``; a suffix keeps two launches in one second apart."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    base = Path(root) / f"{stamp}-{strategy}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}.{n}")
    return path
