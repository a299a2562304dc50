"""One tuning trial: a real launch through the run API, with a hard time limit, judged from its run record.

The verdict never comes from output text: ``ok`` (exit 0 and a result), ``oom`` (a rank exited with
launchdeck's out-of-memory code, or was SIGKILLed — the kernel's OOM killer on CPU ranks), ``hang`` (a
rank stopped, or a node stopped answering), ``timeout`` (the trial outlived ``--trial-timeout`` and was
stopped on every host like any failed job), ``crash`` (anything else, with the rank and its code).
"""

from __future__ import annotations

import json
import signal
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import OUT_OF_MEMORY_EXIT, LaunchdeckError
from ..plan.prepare import Prepared
from ..plan.request import LaunchRequest
from ..run import api
from ..run.execute import Outcome
from ..run.watch import TIMED_OUT
from .space import Candidate

STATUSES = ("ok", "oom", "crash", "hang", "timeout", "skipped")
MEASURED_STEPS = 2  # launch --measure-memory tracks the payload's first two steps


@dataclass(frozen=True)
class TrialResult:
    """What one candidate did: its verdict, its speed (tokens/s, median over the timed steps), its memory."""

    candidate: Candidate
    status: str
    reason: str = ""
    tokens_per_s: float | None = None
    loss: float | None = None  # the mean of the last few losses (the ``loss`` objective)
    peak_mem_mb: float | None = None
    memory: dict | None = None  # result.json's measured memory, per rank
    estimate: dict | None = None  # `launchdeck estimate`'s per-rank breakdown for the same shape
    run_dir: str = ""
    seconds: float = 0.0
    cached: bool = False

    def to_json(self) -> dict:
        data = asdict(self)
        data["candidate"] = {**asdict(self.candidate), "knobs": [list(k) for k in self.candidate.knobs],
                             "label": self.candidate.label}
        return data

    @classmethod
    def from_json(cls, data: dict) -> TrialResult:
        c = data["candidate"]
        candidate = Candidate(c["strategy"], c["micro_batch"], tuple((k, v) for k, v in c["knobs"]))
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "candidate"}
        return cls(candidate=candidate, **fields)


@dataclass(frozen=True)
class TrialSettings:
    """How every trial runs: the base launch request (model, ranks, hosts), steps, warmup, time limit."""

    base: LaunchRequest
    steps: int
    warmup: int
    timeout: float


def trial_request(candidate: Candidate, settings: TrialSettings, run_dir: Path) -> LaunchRequest:
    """The launch a trial is: the base request with the candidate's overrides, its steps, measured memory."""
    return replace(settings.base, strategy=candidate.strategy, overrides=(*settings.base.overrides,
                   *candidate.overrides()), steps=settings.steps + settings.warmup, run_dir=str(run_dir),
                   measure_memory=True)


def run_trial(candidate: Candidate, prepared: Prepared, settings: TrialSettings, estimate: dict | None = None,
              time_left: float = float("inf")) -> TrialResult:
    """Run the prepared trial and judge it from its run record; it may run for its timeout or what is left of
    the tune's budget, whichever is shorter."""
    started = time.monotonic()
    try:
        outcome = api.run(prepared, console=api.CONSOLE_LOG, notify=lambda _line: None,
                          time_limit=min(settings.timeout, time_left))
    except LaunchdeckError as exc:  # refused before it started (a config DeepSpeed rejects, a host down)
        return TrialResult(candidate, "skipped", str(exc), run_dir=prepared.plan.run_dir)
    if outcome.interrupted:  # Ctrl-C ends the tune, not just this trial
        raise KeyboardInterrupt
    return replace(judge(candidate, outcome, settings.warmup, time.monotonic() - started), estimate=estimate)


def judge(candidate: Candidate, outcome: Outcome, warmup: int, seconds: float) -> TrialResult:
    """The verdict from the outcome and ``result.json``; speed from the step times after ``warmup``."""
    status, reason = classify(outcome)
    result_path = Path(outcome.run_dir) / "result.json"
    if status != "ok" or not result_path.is_file():
        return TrialResult(candidate, status if status != "ok" else "crash", reason or "no result.json",
                           run_dir=outcome.run_dir, seconds=seconds)
    result = json.loads(result_path.read_text())
    timed_from = max(warmup, MEASURED_STEPS)  # the payload's memory-measured steps are slower: never timed
    return TrialResult(candidate, "ok", tokens_per_s=throughput(result, timed_from), loss=final_loss(result),
                       peak_mem_mb=(result.get("memory") or {}).get("peak", 0) / 2**20 or result.get("peak_mem_mb"),
                       memory=result.get("memory"), run_dir=outcome.run_dir, seconds=seconds)


def classify(outcome: Outcome) -> tuple[str, str]:
    """(status, reason) of a finished launch."""
    if outcome.returncode == 0:
        return "ok", ""
    failure = outcome.failure
    if failure is None:
        return "crash", f"exit code {outcome.returncode}"
    where = f"rank {failure.rank}" if failure.rank is not None else failure.host
    if failure.reason.startswith(TIMED_OUT):
        return "timeout", failure.reason
    if failure.exit_code is None:
        return "hang", f"{where}: {failure.reason}"
    if failure.exit_code in (OUT_OF_MEMORY_EXIT, -signal.SIGKILL, 128 + signal.SIGKILL):
        return "oom", f"{where}: exit code {failure.exit_code}"
    return "crash", f"{where}: exit code {failure.exit_code}" + (f" ({failure.reason})" if failure.reason else "")


def throughput(result: dict, warmup: int) -> float | None:
    """Tokens/s from the median duration of the steps after ``warmup`` (robust to one slow step)."""
    seconds = result.get("step_seconds") or []
    timed = seconds[warmup:] or seconds[-1:]
    if not timed or not result.get("steps_per_s"):
        return None
    tokens_per_step = result["tokens_per_s"] / result["steps_per_s"]
    return tokens_per_step / statistics.median(timed)


def final_loss(result: dict, last: int = 3) -> float | None:
    losses = result.get("losses") or []
    return statistics.fmean(losses[-last:]) if losses else None
