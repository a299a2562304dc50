"""``launchdeck tune``: real trials of strategies × micro batches (× knobs), the fastest that fits as best.yaml."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from ..errors import LaunchdeckError
from ..estimate.units import parse_size
from ..plan.request import LaunchRequest
from ..spec import catalog
from ..spec.models import PRESETS
from ..tune import OBJECTIVES, SEARCHES, Tuner, TuneRequest, tune
from ..tune.trial import STATUSES, TrialResult
from .options import cluster_options

DEFAULT_STRATEGIES = "ddp,zero1,zero2,zero3,zero2-offload"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h)?")


@click.command()
@click.option("--strategies", default=DEFAULT_STRATEGIES, show_default=True,
              help="Comma-separated catalog strategies, or 'all'.")
@click.option("--micro-batch", "micro_batch", default="auto", show_default=True,
              help="'auto' (1, 2, 4, … while it gains >= 5% and fits) or a comma-separated list.")
@click.option("--model", type=click.Choice(list(PRESETS)), default="tiny", show_default=True, help="Payload model.")
@click.option("--seq-len", type=click.IntRange(min=8), help="Payload sequence length (default: the preset's).")
@click.option("--cpu", is_flag=True, help="CPU ranks with gloo even if GPUs are visible.")
@click.option("--nproc", type=click.IntRange(min=1), help="Ranks on this machine (default: GPUs, or 2 on CPU).")
@cluster_options
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True, help="Timed steps per trial.")
@click.option("--warmup", type=click.IntRange(min=1), default=3, show_default=True,
              help="Steps before the timed ones (first kernels, optimizer states, the memory probe).")
@click.option("--trial-timeout", type=click.FloatRange(min=1), default=300, show_default=True,
              help="Seconds a trial may run (start-up and a first build of DeepSpeed's C++ ops included) before it "
                   "is stopped on every host.")
@click.option("--budget", help="Wall time for the whole tune: 90s, 15m, 1h (default: none).")
@click.option("--search", type=click.Choice(SEARCHES), default="grid", show_default=True)
@click.option("--objective", type=click.Choice(OBJECTIVES), default="tokens_per_s", show_default=True,
              help="tokens_per_s, or loss (bayes searches learning rate and warmup).")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True, help="bayes: trials at most.")
@click.option("--gpu-memory", metavar="SIZE", help="Memory per rank to prune with `estimate` (default on CPU: "
              "this machine's available memory ÷ ranks; on GPUs: no pruning).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="An override for every trial (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), help="The tune directory (default: runs/tune-<time>).")
@click.option("--no-cache", is_flag=True, help="Measure every trial again (default: reuse cached trials).")
@click.option("--seed", type=int, default=0, show_default=True, help="bayes: the sampler's seed.")
def tune_command(strategies: str, micro_batch: str, model: str, seq_len: int | None, cpu: bool, nproc: int | None,
                 cluster: dict, steps: int, warmup: int, trial_timeout: float, budget: str | None, search: str,
                 objective: str, trials: int, gpu_memory: str | None, sets: tuple[str, ...], out: str | None,
                 no_cache: bool, seed: int) -> None:
    """Measure strategies on real trials and write the fastest that fits as best.yaml.

    \b
    Each trial is a real launch (same transports, same teardown) with its own run record under
    runs/tune-<time>/trial-NN/; candidates `estimate` says cannot fit are skipped first.
    Examples:
      launchdeck tune --cpu --model tiny
      launchdeck tune --strategies zero2,zero3 --micro-batch 1,2,4 --budget 15m
      launchdeck tune --cpu --search bayes --trials 12 --strategies zero2,zero3
      launchdeck launch runs/tune-20261129-120000/best.yaml
    """
    base = LaunchRequest(strategy="", overrides=tuple(sets), cpu=cpu, nproc=nproc, model=model, seq_len=seq_len,
                         **cluster)
    request = TuneRequest(strategies=_strategies(strategies), micro_batches=_micro_batches(micro_batch), base=base,
                          steps=steps, warmup=warmup, trial_timeout=trial_timeout, budget=_duration(budget),
                          search=search, objective=objective, trials=trials, seed=seed, out_dir=out,
                          memory_limit=_memory_limit(gpu_memory, cpu, nproc), cache=not no_cache)
    tuner = tune(request, progress=_progress)
    if sys.stderr.isatty():
        click.echo("\r\033[K", err=True, nl=False)  # the bar's line
    click.echo(_summary(tuner))


def _strategies(text: str) -> tuple[str, ...]:
    names = catalog.names() if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise LaunchdeckError("--strategies: name at least one strategy (or 'all')")
    for name in names:
        catalog.load_strategy(name)  # an unknown name is one line listing the catalog
    return tuple(dict.fromkeys(names))


def _micro_batches(text: str) -> tuple[int, ...] | None:
    if text.strip() == "auto":
        return None
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values or not all(v.isascii() and v.isdigit() and int(v) > 0 for v in values):
        raise LaunchdeckError(f"--micro-batch {text!r}: 'auto' or positive integers separated by commas")
    return tuple(dict.fromkeys(int(v) for v in values))


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    match = _DURATION.fullmatch(text.strip())
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"] if match else 0
    if seconds <= 0:
        raise LaunchdeckError(f"--budget {text!r}: a positive duration such as 90s, 15m or 1h")
    return seconds


def _memory_limit(gpu_memory: str | None, cpu: bool, nproc: int | None) -> int | None:
    if gpu_memory is not None:
        return parse_size(gpu_memory)
    from ..node.probe import visible_gpus

    if not cpu and visible_gpus():
        return None
    return _available_memory() // (nproc or 2)


def _available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 1 << 62  # unknown: no pruning in effect


def _progress(result: TrialResult, tuner: Tuner) -> None:
    done = len(tuner.results)
    speed = f"{result.tokens_per_s:,.0f} tokens/s" if result.tokens_per_s else ""
    memory = f"peak {result.peak_mem_mb:,.0f} MB" if result.peak_mem_mb else ""
    detail = ", ".join(x for x in (speed, memory, result.reason) if x)
    cached = " (cached)" if result.cached else f" ({result.seconds:.0f} s)" if result.seconds else ""
    budget = f" / {tuner.request.budget:.0f} s" if tuner.request.budget else ""
    tty = sys.stderr.isatty()
    click.echo(("\r\033[K" if tty else "") + f"[{done:>2}] {result.candidate.label}: {result.status}"
               f"{': ' + detail if detail else ''}{cached}  [{tuner.elapsed:.0f} s{budget}]", err=True)
    if tty:  # a bar under the lines: trials done / planned, elapsed / budget
        click.echo(_bar(done, tuner.planned, tuner.elapsed, tuner.request.budget), err=True, nl=False)
    sys.stderr.flush()


def _bar(done: int, planned: int | None, elapsed: float, budget: float | None, width: int = 30) -> str:
    fraction = done / planned if planned else elapsed / budget if budget else 0.0
    filled = min(width, int(fraction * width))
    trials = f"{done}/{planned} trials" if planned else f"{done} trials"
    clock = f"{elapsed:.0f} s / {budget:.0f} s" if budget else f"{elapsed:.0f} s"
    return f"[{'#' * filled}{'.' * (width - filled)}] {trials}, {clock}"


def _launch_line(tuner: Tuner) -> str:
    """The command that runs the winner the way its trial ran (model, sequence, ranks, hosts)."""
    b = tuner.request.base
    flags = [f"--model {b.model}", f"--seq-len {b.seq_len}" if b.seq_len else "", "--cpu" if b.cpu else "",
             f"--nproc {b.nproc}" if b.nproc else "", f"--hostfile {b.hostfile}" if b.hostfile else "",
             f"--launcher {b.launcher}" if b.launcher else ""]
    return " ".join(["launchdeck launch", str(tuner.directory / "best.yaml"), *filter(None, flags)])


def _summary(tuner: Tuner) -> str:
    ok = sorted((r for r in tuner.results if r.status == "ok" and r.tokens_per_s), key=lambda r: -r.tokens_per_s)
    counts = ", ".join(f"{sum(r.status == s for r in tuner.results)} {s}" for s in STATUSES
                       if any(r.status == s for r in tuner.results))
    lines = [f"{len(tuner.results)} trials in {tuner.elapsed:.0f} s: {counts or 'none'}"]
    lines += [f"  {r.candidate.label:<40} {r.tokens_per_s:>12,.0f} tokens/s  loss {r.loss or 0:.3f}" for r in ok]
    best = tuner.best()
    if best is None:
        lines.append("no trial succeeded; see the trials' run records under " + str(tuner.directory))
    else:
        lines.append(f"best: {best.candidate.label} → {tuner.directory / 'best.yaml'}")
        lines.append("  " + _launch_line(tuner))
    lines.append(f"  launchdeck report {tuner.directory}")
    return "\n".join(lines)
