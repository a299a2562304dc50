"""What to try next. ``grid``: every strategy × micro batch (given, or doubled from 1 while it gains at least
5% and fits). ``bayes``: optuna's TPE sampler over strategy, micro batch and the engine's numeric knobs
(the registry's ``tunable``; with the ``loss`` objective, learning rate and warmup instead)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..spec import engines
from ..spec.catalog import load_strategy
from .space import LOSS_KNOBS, Candidate

if TYPE_CHECKING:
    from . import Tuner

MIN_GAIN = 1.05  # doubling the micro batch must buy at least 5% more tokens/s to go on
MAX_AUTO_MICRO_BATCH = 1024
BAYES_MICRO_BATCHES = (1, 2, 4, 8, 16)


def search(tuner: Tuner) -> None:
    if tuner.request.search == "bayes":
        bayes(tuner)
    else:
        grid(tuner)


def grid(tuner: Tuner) -> None:
    for strategy in tuner.request.strategies:
        if tuner.request.micro_batches:
            for micro_batch in tuner.request.micro_batches:
                tuner.measure(Candidate(strategy, micro_batch))
        else:
            doubling(tuner, strategy)


def doubling(tuner: Tuner, strategy: str) -> None:
    """Micro batch 1, 2, 4, … until a trial fails, does not fit, or gains less than 5%."""
    best, micro_batch = 0.0, 1
    while micro_batch <= MAX_AUTO_MICRO_BATCH and not tuner.out_of_budget():
        result = tuner.measure(Candidate(strategy, micro_batch))
        if result.status != "ok" or not result.tokens_per_s:
            return
        if result.tokens_per_s < best * MIN_GAIN:
            return
        best, micro_batch = max(best, result.tokens_per_s), micro_batch * 2


def bayes(tuner: Tuner) -> None:
    """optuna's TPE (seeded): each trial suggests a strategy, a micro batch and that engine's knobs."""
    import optuna  # a real Bayesian optimizer, imported only when asked for

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    loss = tuner.request.objective == "loss"
    study = optuna.create_study(direction="minimize" if loss else "maximize",
                                sampler=optuna.samplers.TPESampler(seed=tuner.request.seed))
    knobs = {name: (LOSS_KNOBS if loss else engines.get(load_strategy(name).engine).tunable)
             for name in tuner.request.strategies}
    micro_batches = tuner.request.micro_batches or BAYES_MICRO_BATCHES

    def objective(trial: optuna.Trial) -> float:
        strategy = trial.suggest_categorical("strategy", list(tuner.request.strategies))
        micro_batch = trial.suggest_categorical("micro_batch", list(micro_batches))
        chosen = tuple(sorted((key, _suggest(trial, f"{strategy}:{key}", knob))
                              for key, knob in knobs[strategy].items()))
        result = tuner.measure(Candidate(strategy, micro_batch, chosen))
        value = result.loss if loss else result.tokens_per_s
        if result.status != "ok" or value is None:
            raise optuna.TrialPruned(result.reason or result.status)  # no value: not a point of the model
        return value

    for _ in range(tuner.request.trials):
        if tuner.out_of_budget():
            break
        study.optimize(objective, n_trials=1, catch=())


def _suggest(trial, name: str, knob) -> float | int:
    if knob.integer:  # optuna searches the quotient, so what it records is exactly what was measured
        units = trial.suggest_int(name, int(knob.low) // knob.multiple, int(knob.high) // knob.multiple, log=knob.log)
        return units * knob.multiple
    return trial.suggest_float(name, knob.low, knob.high, log=knob.log)  # measured exactly as suggested
