"""The training loop: set up this rank, build model and engine, train, checkpoint, report."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ...files import write_atomic
from ...node import progress
from . import checkpoint, engines, resume, runtime
from .data import Batches, load_corpus
from .drills import Drills
from .loader import Loader
from .memory import MEASURED_STEP, MemoryProbe
from .metrics import Meter
from .model import PRESETS, build_model, count_parameters


@dataclass
class Context:
    """What engines need besides the config: where they run and how to get their data."""

    runtime: runtime.Runtime
    corpus: object  # token ids (bytes), shared by every engine's batches
    seq_len: int
    micro_batch: int
    seed: int
    activation_checkpointing: bool
    global_batch: int
    steps: int
    data_workers: int = 0
    prefetch: int = 2
    loaders: list[Loader] = field(default_factory=list)

    def batches(self, dp_rank: int, dp_size: int) -> Loader:
        """This data-parallel rank's micro batches, built ahead by the run's data workers."""
        made = Batches(self.corpus, self.seq_len, self.micro_batch, self.seed, dp_rank, dp_size, self.global_batch)
        pin = self.runtime.device.type == "cuda"
        self.loaders.append(Loader(made, self.steps, self.data_workers, self.prefetch, pin))
        return self.loaders[-1]

    def stop_loaders(self) -> float:
        """Stop every loader's workers (at the end); the seconds this rank waited for its data in all."""
        for loader in self.loaders:
            loader.close()
        return sum(loader.wait_s for loader in self.loaders)


def train(args, started: float) -> int:
    runtime.die_with_parent()
    # DeepSpeed calls a collective torch deprecated: one warning per rank per call, nothing to act on.
    warnings.filterwarnings("ignore", message=r".*`torch\.distributed\.\w+` is deprecated", category=FutureWarning)
    spec, module = engines.load(args.engine)
    rt = runtime.detect(spec.backends, force_cpu=args.cpu)
    if rt.device.type == "cpu":
        runtime.set_cpu_threads(rt)
    comm = module.connect(rt)
    config = _at_world(module, json.loads(Path(args.config).read_text()), rt)
    shape = module.shape(config)
    context = _context(args, shape, rt)
    probe = MemoryProbe(rt.device) if args.measure_memory else None
    ckpt_root = Path(args.ckpt_dir or Path(args.run_dir or ".") / "checkpoints")
    source = _checkpoint_to_resume(args, ckpt_root)
    if source is not None:  # saved at another size, a checkpoint may need converting before the engine exists
        config = module.resumable(config, source, resume.read_meta(source), rt, comm)
    with probe.building() if probe else contextlib.nullcontext():
        engine = module.create(config, build_model(args.model, context.seq_len, args.seed), context)
    start = _resume(engine, source, rt) if source is not None else 0
    tokens_per_step = shape.global_batch * context.seq_len
    meter = Meter(args.steps, tokens_per_step, args.log_interval, rt.device, started, verbose=rt.is_main,
                  warmup=MEASURED_STEP + 1 if probe else 1)  # measured steps are slower: not timed
    if rt.is_main:
        print(f"launchdeck: {args.strategy} on {rt.world_size} {rt.device.type} rank(s) ({rt.backend}); model "
              f"{args.model} ({count_parameters(engine.module) / 1e6:.2f} M params), steps {start}→{args.steps}",
              flush=True)
    drills = Drills.parse(rt.rank, args.crash_at, args.stall_at, args.run_dir)
    reporter = progress.from_env()  # the stall watch's view of this rank
    for step in range(start, args.steps):
        drills.before_step(step + 1)
        reporter.begin(step + 1)
        began = time.perf_counter()
        with _measuring(probe, engine, step - start):
            loss = engine.train_step(step)
        ended = time.perf_counter()
        meter.update(step, loss, engine.lr(), ended - began, ended)
        done = step + 1
        reporter.finished_step(done)
        if (args.save_every and done % args.save_every == 0) or done == args.steps:
            reporter.saving()
            save(engine, ckpt_root, done, rt, comm, drills)
    reporter.finished()
    _finish(args, engine, meter, rt, start, comm, probe, context.stop_loaders())
    return 0


def save(engine, root: Path, step: int, rt: runtime.Runtime, comm, drills: Drills) -> None:
    """Every rank writes into the partial directory; rank 0 publishes it after a barrier. A save that cannot
    be written (a full disk, a read-only one) is removed again and ends the run: the latest complete
    checkpoint stays the latest."""
    try:
        _save(engine, root, step, rt, comm, drills)
        return
    except (OSError, RuntimeError) as exc:  # torch.save on a full disk: RuntimeError "unexpected pos …"
        cause = checkpoint.disk_problem(root, exc)  # asked before the partial save is removed
        if cause is None:
            raise
    gc.collect()  # the failed writer, held by the exception's frames until now, closes its file
    shutil.rmtree(checkpoint.partial_dir(root, step), ignore_errors=True)  # and this frees the space it took
    raise checkpoint.SaveFailed(step, cause, checkpoint.latest(root))


def _save(engine, root: Path, step: int, rt: runtime.Runtime, comm, drills: Drills) -> None:
    if rt.is_main:
        root.mkdir(parents=True, exist_ok=True)
        checkpoint.sweep_partials(root)
        checkpoint.partial_dir(root, step).mkdir()
    comm.barrier()
    partial = checkpoint.partial_dir(root, step)
    engine.save(str(partial), step)
    resume.save_rng(partial, rt.rank)
    drills.saving(step)
    if rt.is_main:
        resume.write_meta(partial, resume.Saved(step, rt.world_size, engine.data_parallel_size))
    comm.barrier()
    if rt.is_main:
        checkpoint.publish(root, step)
    comm.barrier()


def _at_world(module, config: dict, rt: runtime.Runtime) -> dict:
    """The rendered config at the world this rank found: an elastic restart may have changed it."""
    resized = module.at_world(config, rt.world_size)
    if resized is not config and rt.is_main:
        print(f"launchdeck: world size {rt.world_size}, not the one the config was rendered for: grad_accum "
              "solved again to keep the global batch", flush=True)
    return resized


def _checkpoint_to_resume(args, own: Path) -> Path | None:
    """--auto-resume: this run's own latest checkpoint when it has one (a restart); else --resume-from's."""
    found = checkpoint.latest(own) if args.auto_resume else None
    if found is not None or not args.resume_from:
        return found
    found = checkpoint.latest(Path(args.resume_from))
    if found is None:
        raise SystemExit(f"launchdeck: error: --resume: no complete checkpoint under {args.resume_from}")
    return found


def _resume(engine, found: Path, rt: runtime.Runtime) -> int:
    """Load the engine's state, and this rank's random state where the world is the one it was saved at."""
    step = engine.load(str(found))
    saved = resume.read_meta(found)
    same_world = saved is None or saved.world_size == rt.world_size
    if same_world:  # at another size ranks hold other data: no random state of theirs to continue
        resume.restore_rng(found, rt.rank)
    if rt.is_main:
        moved = "" if same_world else f", saved at world size {saved.world_size}, now {rt.world_size}"
        print(f"launchdeck: resumed from {found} (step {step}{moved})", flush=True)
    return step


def _context(args, shape: engines.TrainShape, rt: runtime.Runtime) -> Context:
    seq_len = args.seq_len or PRESETS[args.model].seq_len
    tokens = load_corpus(args.data)  # made before any memory is measured: it stays on the CPU
    if tokens.size <= seq_len + 1:
        raise SystemExit(f"launchdeck: error: --data holds {tokens.size} tokens, too few for one sequence of "
                         f"{seq_len} (--seq-len) and its next token")
    return Context(rt, tokens, seq_len, shape.micro_batch, args.seed, shape.activation_checkpointing,
                   shape.global_batch, args.steps, args.data_workers, args.prefetch)


def _measuring(probe: MemoryProbe | None, engine, done: int) -> contextlib.AbstractContextManager:
    """The memory probe's steps: tracked up to the measured one, untracked after it (no cost to throughput)."""
    if probe is None or done > MEASURED_STEP:
        return contextlib.nullcontext()
    return probe.step(engine.module, measured=done == MEASURED_STEP)


def _finish(args, engine, meter: Meter, rt: runtime.Runtime, start: int, comm,
            probe: MemoryProbe | None, input_wait: float) -> None:
    memory = comm.gather(probe.report()) if probe else None  # every rank takes part in the gather
    waits = comm.gather(round(input_wait, 4))
    digests = comm.gather(engine.digest())
    hosts = comm.gather(socket.gethostname())  # where each rank ran: proof a multi-host job really spread
    identical = len(set(digests)) == 1 if engine.identical_replicas else None
    comm.shutdown(engine)
    if not rt.is_main:
        return
    summary = meter.summary()
    result = {
        "strategy": args.strategy, "engine": args.engine, "world_size": rt.world_size, "device": rt.device.type,
        "model": args.model, "steps": args.steps, "start_step": start, **summary,
        "param_digests": digests,
        "rank_hosts": hosts,
        "params_identical": identical,
        "finite": all(math.isfinite(x) for x in summary["losses"]),
        "data_workers": args.data_workers,
        "input_wait_s": max(waits),  # the rank that waited longest for its data
        "input_wait_s_ranks": waits,
        **getattr(engine, "results", {}),  # an engine's own findings (what compression achieved)
    }
    if memory and all(memory):
        result["memory"] = {**{key: max(rank[key] for rank in memory) for key in memory[0]}, "ranks": memory}
    print(f"launchdeck: done: loss {result['loss_first']:.4f} → {result['loss_last']:.4f}, "
          f"{result['steps_per_s']:.2f} steps/s, {result['tokens_per_s']:,.0f} tokens/s", flush=True)
    if args.run_dir:
        Path(args.run_dir).mkdir(parents=True, exist_ok=True)
        write_atomic(Path(args.run_dir) / "result.json", json.dumps(result, indent=2) + "\n")
