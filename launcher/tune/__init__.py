"""``launchdeck tune``: measure candidates on real trials, pick the fastest that fits, write it as a strategy.

Every candidate goes through the same gate: rendered for the real world size (a candidate the rules
refuse is skipped, with the reason), pruned by ``estimate`` when a device's memory is known, looked up in
the cache, and only then launched through the run API with a hard time limit (:mod:`.trial`). The search
(:mod:`.search`) decides what to try next: a grid (micro batch doubled while it gains >= 5%), or optuna's
TPE over the engines' numeric knobs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import LaunchdeckError
from ..estimate import Workload, per_rank
from ..estimate.units import human
from ..files import write_atomic
from ..plan.prepare import Prepared, prepare
from ..plan.request import LaunchRequest
from ..spec.models import resolve
from .cache import TrialCache, fingerprint
from .space import Candidate, best_yaml
from .trial import TrialResult, TrialSettings, run_trial, trial_request

OBJECTIVES = ("tokens_per_s", "loss")
MIN_TRIAL_S = 5.0  # less budget than this left: no trial can start and measure anything
SEARCHES = ("grid", "bayes")


@dataclass(frozen=True)
class TuneRequest:
    """What to tune: strategies, micro batches (None: doubled from 1 while it pays), the base launch (model,
    ranks, hosts), trial length and limits, the search and its objective."""

    strategies: tuple[str, ...]
    micro_batches: tuple[int, ...] | None
    base: LaunchRequest
    steps: int = 10
    warmup: int = 3
    trial_timeout: float = 300.0
    budget: float | None = None  # seconds for the whole tune (None: unbounded)
    search: str = "grid"
    objective: str = "tokens_per_s"
    trials: int = 20  # bayes: how many trials at most
    memory_limit: int | None = None  # bytes per rank a candidate may need (None: no pruning)
    out_dir: str | None = None
    cache: bool = True
    seed: int = 0


@dataclass
class Tuner:
    """A tune in progress: its directory, its cache, the results so far, and the clock."""

    request: TuneRequest
    directory: Path
    progress: Callable[[TrialResult, Tuner], None] = lambda result, tuner: None
    results: list[TrialResult] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        r = self.request
        self.settings = TrialSettings(base=r.base, steps=r.steps, warmup=r.warmup, timeout=r.trial_timeout)
        self.cache = TrialCache(Path(r.base.runs_root) / "tune-cache.json") if r.cache else None
        self.context = {"model": r.base.model, "seq_len": r.base.seq_len, "steps": r.steps, "warmup": r.warmup,
                        "env": list(r.base.env), "transport": r.base.launcher, "machine": fingerprint(r.base.cpu)}

    @property
    def planned(self) -> int | None:
        """Trials the search means to run (None: decided as it goes, like the doubling micro batch)."""
        r = self.request
        if r.search == "bayes":
            return r.trials
        return len(r.strategies) * len(r.micro_batches) if r.micro_batches else None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def out_of_budget(self) -> bool:
        return self.time_left() < MIN_TRIAL_S

    def measure(self, candidate: Candidate) -> TrialResult:
        """The candidate's result: skipped, cached, or measured now (and remembered)."""
        run_dir = self.directory / f"trial-{len(self.results) + 1:02d}"
        result, estimate, prepared = self._gate(candidate, run_dir)
        if result is None:
            key = candidate.key({**self.context, "config": _identity(prepared)})
            result = self.cache.get(key) if self.cache else None
            result = replace(result, cached=True) if result else \
                run_trial(candidate, prepared, self.settings, estimate, self.time_left())
            if self.cache and not result.cached:
                self.cache.put(key, result)
        self.results.append(result)
        self.write()  # an interrupted tune keeps what it measured
        self.progress(result, self)
        return result

    def time_left(self) -> float:
        return float("inf") if self.request.budget is None else self.request.budget - self.elapsed

    def _gate(self, candidate: Candidate, run_dir: Path) -> tuple[TrialResult | None, dict | None, Prepared | None]:
        """(a skip verdict when the candidate cannot run, would not fit, or the budget is spent; its estimate;
        the prepared trial, rendered and planned once for both the gate and the run)."""
        if self.out_of_budget():
            return TrialResult(candidate, "skipped", "the budget is spent"), None, None
        request = trial_request(candidate, self.settings, run_dir)
        try:
            prepared = prepare(request)
        except LaunchdeckError as exc:
            return TrialResult(candidate, "skipped", str(exc)), None, None
        rendered = prepared.rendered
        model = resolve(request.model)
        work = Workload(model, candidate.micro_batch, request.seq_len or model.seq_len,
                        cpu=rendered.cluster.accelerator == "cpu")
        estimate = per_rank(rendered, work)
        limit = self.request.memory_limit
        if limit is not None and estimate.peak > limit:
            reason = f"estimate: {human(estimate.peak)} per rank > {human(limit)}"
            return TrialResult(candidate, "skipped", reason, estimate=estimate.to_json()), None, None
        return None, estimate.to_json(), prepared

    def best(self) -> TrialResult | None:
        ok = [r for r in self.results if r.status == "ok" and _score(r, self.request.objective) is not None]
        if not ok:
            return None
        return min(ok, key=lambda r: _score(r, self.request.objective))

    def write(self) -> Path | None:
        """``tune.json`` (every trial) and, when something ran, ``best.yaml``; returns best.yaml's path."""
        best = self.best()
        summary = {"request": _request_json(self.request), "elapsed_s": self.elapsed,
                   "best": best.to_json() if best else None, "trials": [r.to_json() for r in self.results]}
        write_atomic(self.directory / "tune.json", json.dumps(summary, indent=2) + "\n")
        if best is None:
            return None
        path = self.directory / "best.yaml"
        text = best_yaml(best.candidate, best.tokens_per_s or 0.0, str(self.directory), self.request.base.overrides)
        write_atomic(path, text)
        return path


def _identity(prepared: Prepared) -> dict:
    """What a trial runs, as the cache keys it: the rendered config, the world and its hosts."""
    plan = prepared.plan
    return {"rendered": prepared.rendered.config, "world": plan.world_size, "hosts": [n.host for n in plan.nodes]}


def _score(result: TrialResult, objective: str) -> float | None:
    """Smaller is better: negative tokens/s, or the loss."""
    if objective == "loss":
        return result.loss
    return -result.tokens_per_s if result.tokens_per_s else None


def _request_json(request: TuneRequest) -> dict:
    base = {k: v for k, v in vars(request.base).items() if v not in (None, (), False)}
    return {**{k: v for k, v in vars(request).items() if k != "base"}, "base": base}


def tune(request: TuneRequest, progress: Callable[[TrialResult, Tuner], None] | None = None) -> Tuner:
    """Run the search; the tuner holds every result, and its directory ``tune.json`` and ``best.yaml``."""
    from .search import search

    directory = Path(request.out_dir or Path(request.base.runs_root) / f"tune-{time.strftime('%Y%m%d-%H%M%S')}")
    if directory.exists() and any(directory.iterdir()):
        raise LaunchdeckError(f"{directory} already holds a tune; pick a new --out")
    directory.mkdir(parents=True, exist_ok=True)
    tuner = Tuner(request, directory.absolute(), progress or (lambda result, tuner: None))
    try:
        search(tuner)
    finally:
        tuner.write()
    return tuner
