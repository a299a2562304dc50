"""Restarts: a failed job starts again from its run's latest complete checkpoint, on the nodes that still work.

``launch --max-restarts N`` runs attempt 1 like any job. When it fails (a rank exits, hangs or stalls, a node is
lost), everything is torn down as always, its logs move to ``logs/attempt-1/``, and attempt 2 starts from the
latest complete checkpoint of the same run, up to N times. With ``--min-nodes M`` the next attempt leaves out
the nodes that were lost and those that fail preflight now (the hostfile is read again, so a node that came
back rejoins), while at least M remain; the global batch stays and grad_accum is solved again for the new
world size (refused in one line when it cannot be). Fault drills fire in the first attempt only.

Not restarted: a success, a Ctrl-C, a time limit, and failures that would repeat (out of memory, a
checkpoint that cannot be written).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CHECKPOINT_EXIT, OUT_OF_MEMORY_EXIT, LaunchdeckError
from ..plan.prepare import Prepared, prepare
from ..plan.request import LaunchRequest
from ..plan.resume import checkpoint_meta, checkpoint_step, find_resume_source, has_checkpoint
from . import preflight, record
from .execute import Outcome
from .watch import TIMED_OUT

REPEATS = {OUT_OF_MEMORY_EXIT: "out of memory", CHECKPOINT_EXIT: "a checkpoint could not be written"}

RunAttempt = Callable[[Prepared, int], Outcome]  # (the attempt's plan, its number from 1) -> how it ended


@dataclass(frozen=True)
class Attempt:
    """One start of a job that may restart: where it ran, the step it resumed from, how it ended."""

    number: int
    hosts: list[str]
    world_size: int
    global_batch: int
    resumed_from_step: int | None
    returncode: int
    elapsed_s: float
    failure: dict | None
    logs: str  # where this attempt's logs are kept
    left_out: dict[str, str] = field(default_factory=dict)  # host -> why this attempt runs without it
    restart: str = ""  # why it was (or was not) followed by another attempt


def launch(request: LaunchRequest, first: Prepared, run_attempt: RunAttempt, notify: Callable[[str], None],
           check_hosts: bool = True) -> Outcome:
    """Run attempts until one succeeds, one must not be restarted, or the restarts are used up; then record
    them all in ``outcome.json``."""
    attempts: list[Attempt] = []
    outcome = _run_attempts(_pinned(request, first), first, run_attempt, notify, check_hosts, attempts)
    final = _final(outcome, attempts)
    if len(attempts) > 1 or attempts[-1].restart != "succeeded":
        notify(f"launchdeck: attempt {attempts[-1].number}: {attempts[-1].restart}")
    for problem in record.finish(Path(first.plan.run_dir), final, failed=bool(final.returncode)):
        notify(problem)
    return final


def _run_attempts(request: LaunchRequest, first: Prepared, run_attempt: RunAttempt, notify: Callable[[str], None],
                  check_hosts: bool, attempts: list[Attempt]) -> Outcome:
    """The attempts, appended to ``attempts`` as they end; returns the last one that ran."""
    run_dir, prepared, left_out, planned = Path(first.plan.run_dir), first, {}, request
    for number in range(1, request.max_restarts + 2):
        resumed = _resumed_step(planned)  # before it runs: it writes checkpoints of its own
        try:
            outcome = run_attempt(prepared, number)
        except LaunchdeckError as exc:  # a restart refused before it started (a host fails preflight)
            if number == 1:
                raise
            record.restore_inputs(run_dir, number - 1)
            attempts[-1] = dataclasses.replace(attempts[-1], restart=f"restart refused: {exc}")
            return outcome  # the attempt before it
        attempts.append(_attempt(number, prepared, outcome, resumed, left_out))
        verdict = _verdict(outcome, number, request.max_restarts)
        if verdict is None:
            try:
                planned, prepared, left_out = _next(request, run_dir, outcome, number + 1, check_hosts)
                attempts[-1] = _archived(attempts[-1], record.archive_attempt(run_dir, number))
            except (LaunchdeckError, OSError) as exc:
                verdict = f"not restarted: {exc}"
            except KeyboardInterrupt:  # Ctrl-C while the next attempt was being prepared (preflight)
                verdict = "not restarted: interrupted"
        attempts[-1] = dataclasses.replace(attempts[-1], restart=verdict or "restarted")
        if verdict is not None:
            return outcome
        notify(_restart_line(number, request.max_restarts, outcome, run_dir, left_out))
    return outcome


def _pinned(request: LaunchRequest, first: Prepared) -> LaunchRequest:
    """What every restart keeps: the first attempt's global batch (grad_accum solved again for the world it
    finds), and the checkpoint it started from (``--resume last`` resolved once)."""
    strategy = first.rendered.strategy.name
    resume = str(find_resume_source(request.resume, request.runs_root, strategy)) if request.resume else None
    kept = (*request.overrides, "training.grad_accum=null", f"training.global_batch={first.rendered.global_batch}")
    return dataclasses.replace(request, overrides=kept, resume=resume)


def _final(outcome: Outcome, attempts: list[Attempt]) -> Outcome:
    """The last attempt's outcome with every attempt; its failure's logs where they were kept."""
    failure, kept = outcome.failure, attempts[-1].failure
    if failure is not None and kept is not None:
        failure = dataclasses.replace(failure, log_tails=kept["log_tails"])
    return dataclasses.replace(outcome, failure=failure, attempts=[dataclasses.asdict(a) for a in attempts])


def _verdict(outcome: Outcome, number: int, max_restarts: int) -> str | None:
    """Why this attempt is the last one, or None when the job starts again."""
    failure = outcome.failure
    if outcome.returncode == 0:
        return "succeeded"
    if outcome.interrupted:
        return "not restarted: interrupted"
    if failure is not None and failure.reason.startswith(TIMED_OUT):
        return "not restarted: the time limit is over"
    if failure is not None and failure.exit_code in REPEATS:
        return f"not restarted: {REPEATS[failure.exit_code]} would happen again"
    if number > max_restarts:
        return f"not restarted: all {max_restarts} restart(s) used"
    return None


def _next(request: LaunchRequest, run_dir: Path, outcome: Outcome, number: int,
          check_hosts: bool) -> tuple[LaunchRequest, Prepared, dict[str, str]]:
    """Attempt ``number``'s request and plan: resumed from this run's checkpoint, drills off, and with
    --min-nodes, without the nodes that were lost or fail preflight now."""
    again = _restart_request(request, run_dir, number)
    prepared = prepare(again)
    if request.min_nodes is None:
        return again, prepared, {}
    left_out = {host: "lost in the last attempt" for host in outcome.lost_hosts}
    if check_hosts and preflight.needs_preflight(prepared.plan):
        candidates = _without(again, prepared, left_out)
        for check in preflight.check_hosts(candidates.plan, cpu=prepared.rendered.cluster.accelerator == "cpu",
                                           shared=prepared.plan.config_path):
            if not check.ok:
                left_out[check.host] = "; ".join(check.problems)
    prepared = _without(again, prepared, left_out)
    if len(prepared.plan.nodes) < request.min_nodes:
        raise LaunchdeckError(f"{len(prepared.plan.nodes)} node(s) left, fewer than --min-nodes "
                              f"{request.min_nodes} ({_reasons(left_out)})")
    if prepared.rendered.strategy.pipeline and prepared.rendered.data_parallel_size != _first_dp(run_dir):
        raise LaunchdeckError("a pipeline's checkpoint resumes only at the data-parallel size it was saved at")
    return again, prepared, left_out


def _restart_request(request: LaunchRequest, run_dir: Path, number: int) -> LaunchRequest:
    """Attempt ``number``: this run's directory and checkpoint (else where the first attempt started from), no
    drills; the node count is checked against --min-nodes here, not by ``prepare``."""
    resume = str(run_dir) if has_checkpoint(run_dir) else request.resume
    return dataclasses.replace(request, run_dir=str(run_dir), resume=resume, crash_at=None, stall_at=None,
                               min_nodes=None, attempt=number)


def _without(request: LaunchRequest, prepared: Prepared, left_out: dict[str, str]) -> Prepared:
    """``prepared`` (the plan of every host) again without ``left_out``'s hosts."""
    gone = [host for host in left_out if any(node.host == host for node in prepared.plan.nodes)]
    if not gone:
        return prepared
    if len(gone) == len({node.host for node in prepared.plan.nodes}):
        raise LaunchdeckError(f"no node left ({_reasons(left_out)})")
    exclude = "@".join([*filter(None, [request.exclude]), *gone])
    return prepare(dataclasses.replace(request, exclude=exclude))


def _resumed_step(request: LaunchRequest) -> int | None:
    return checkpoint_step(Path(request.resume)) if request.resume else None


def _first_dp(run_dir: Path) -> int | None:
    """The data-parallel size of the run's latest checkpoint (its meta.json), if any."""
    meta = checkpoint_meta(run_dir)
    return meta.get("data_parallel_size") if meta else None


def _attempt(number: int, prepared: Prepared, outcome: Outcome, resumed: int | None,
             left_out: dict[str, str]) -> Attempt:
    plan, failure = prepared.plan, outcome.failure
    return Attempt(number, [node.host for node in plan.nodes], plan.world_size, prepared.rendered.global_batch,
                   resumed, outcome.returncode, round(outcome.elapsed_s, 3),
                   dataclasses.asdict(failure) if failure else None, str(Path(plan.run_dir) / "logs"), dict(left_out))


def _archived(attempt: Attempt, kept: Path) -> Attempt:
    """The attempt with its logs where :func:`record.archive_attempt` moved them (the failure's log paths too)."""
    failure = attempt.failure
    if failure is not None:
        logs = attempt.logs + "/"
        tails = {path.replace(logs, f"{kept}/", 1): tail for path, tail in failure["log_tails"].items()}
        failure = {**failure, "log_tails": tails}
    return dataclasses.replace(attempt, logs=str(kept), failure=failure)


def _restart_line(number: int, max_restarts: int, outcome: Outcome, run_dir: Path, left_out: dict[str, str]) -> str:
    step = checkpoint_step(run_dir)
    where = f"from step {step}" if step is not None else "from the start (no complete checkpoint yet)"
    without = f", without {_reasons(left_out)}" if left_out else ""
    failure = outcome.failure
    what = f"{failure.host}: {failure.reason or f'exit code {failure.exit_code}'}" if failure else "failed"
    return (f"launchdeck: attempt {number} failed ({what}) after {outcome.elapsed_s:.1f} s; restart "
            f"{number}/{max_restarts} {where}{without}; its logs: {run_dir / 'logs' / f'attempt-{number}'}")


def _reasons(left_out: dict[str, str]) -> str:
    return ", ".join(f"{host}: {why}" for host, why in left_out.items()) or "none left out"
