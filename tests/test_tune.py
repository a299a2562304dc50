"""`launchdeck tune` and `launchdeck report`: verdicts from run records, the winner as a strategy the catalog
loads, real trials on CPU ranks (a hanging one ended at its time limit), the cache, optuna, the plots."""

from __future__ import annotations

import json
import os
import signal
import struct
from pathlib import Path

import pytest

from launcher.errors import OUT_OF_MEMORY_EXIT
from launcher.node import processes
from launcher.plan.request import LaunchRequest
from launcher.run.execute import Outcome
from launcher.run.watch import Failure
from launcher.spec.catalog import load_strategy
from launcher.tune import TuneRequest, tune
from launcher.tune.space import Candidate, best_yaml
from launcher.tune.trial import classify, throughput


def outcome(code: int, failure: Failure | None = None) -> Outcome:
    return Outcome(returncode=code, elapsed_s=1.0, interrupted=False, failure=failure, run_dir="/nowhere")


@pytest.mark.parametrize("failure, status", [
    (Failure("h", None, None, {}, "timed out: still running after 20 s"), "timeout"),
    (Failure("h", 1, None, {}, "hung: stopped for 5 s, killed by launchdeck's agent"), "hang"),
    (Failure("h", None, None, {}, "stopped answering: no heartbeat for 11.0 s"), "hang"),
    (Failure("h", 1, OUT_OF_MEMORY_EXIT, {}), "oom"),
    (Failure("h", 0, -signal.SIGKILL, {}), "oom"),
    (Failure("h", 1, 17, {}), "crash"),
])
def test_verdicts_come_from_the_outcome(failure, status):
    assert classify(outcome(1, failure))[0] == status
    assert classify(outcome(0)) == ("ok", "")


def test_throughput_is_the_median_of_the_timed_steps():
    result = {"step_seconds": [9.0, 5.0, 0.5, 0.25, 0.5, 30.0], "steps_per_s": 2.0, "tokens_per_s": 2000.0}
    assert throughput(result, warmup=2) == pytest.approx(1000 / 0.5)


def test_the_winner_is_a_strategy_the_catalog_loads(tmp_path):
    candidate = Candidate("zero2", 8, (("zero.allgather_bucket_size", 2.5e8), ("zero.reduce_bucket_size", 1.2e7)))
    path = tmp_path / "best.yaml"
    path.write_text(best_yaml(candidate, 1234.5, str(tmp_path)))
    strategy = load_strategy(str(path))
    assert strategy.engine == "deepspeed" and strategy.training.micro_batch == 8
    assert strategy.zero.stage == 2 and strategy.zero.reduce_bucket_size == 1.2e7
    assert strategy.zero.allgather_bucket_size == 2.5e8


def test_the_winner_keeps_the_tunes_own_overrides(tmp_path):
    path = tmp_path / "best.yaml"
    path.write_text(best_yaml(Candidate("ddp", 4), 10.0, str(tmp_path), ("training.precision=fp32",
                                                                          "optimizer.betas=[0.9, 0.99]")))
    strategy = load_strategy(str(path))
    assert strategy.training.precision == "fp32" and strategy.optimizer.betas == (0.9, 0.99)
    assert strategy.training.micro_batch == 4


def test_only_definite_verdicts_are_cached(tmp_path):
    from launcher.tune.cache import TrialCache
    from launcher.tune.trial import TrialResult

    cache = TrialCache(tmp_path / "cache.json")
    verdicts = {"a": TrialResult(Candidate("ddp", 1), "ok", tokens_per_s=5.0),
                "b": TrialResult(Candidate("ddp", 2), "oom", f"rank 1: exit code {OUT_OF_MEMORY_EXIT}"),
                "c": TrialResult(Candidate("ddp", 4), "oom", "rank 1: exit code -9"),
                "d": TrialResult(Candidate("ddp", 8), "timeout", "timed out: still running after 9 s")}
    for key, result in verdicts.items():
        cache.put(key, result)
    again = TrialCache(tmp_path / "cache.json")
    assert again.get("a") == verdicts["a"] and again.get("b") == verdicts["b"]
    assert again.get("c") is None and again.get("d") is None


def test_cache_keys_change_with_what_decides_the_measurement():
    a, b = Candidate("ddp", 2), Candidate("ddp", 4)
    assert a.key({"model": "tiny"}) == Candidate("ddp", 2).key({"model": "tiny"})
    assert len({a.key({"model": "tiny"}), b.key({"model": "tiny"}), a.key({"model": "125m"})}) == 3


@pytest.mark.parametrize("args, message", [
    (["--strategies", "ddp,nosuch"], "nosuch"),
    (["--strategies", ","], "at least one strategy"),
    (["--budget", "0"], "positive duration"),
    (["--budget", "soon"], "positive duration"),
    (["--micro-batch", ""], "positive integers"),
    (["--micro-batch", "1,0"], "positive integers"),
    (["--search", "random"], "search"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, message, tmp_path):
    result = cli("tune", "--cpu", "--out", str(tmp_path / "t"), *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def base(tmp_path: Path, **fields) -> LaunchRequest:
    return LaunchRequest(strategy="", cpu=True, nproc=2, runs_root=str(tmp_path / "runs"), **fields)


@pytest.mark.slow
def test_a_grid_tune_measures_picks_caches_and_reports(tmp_path, cli):
    request = TuneRequest(strategies=("ddp", "zero2"), micro_batches=(1, 2), base=base(tmp_path), steps=3, warmup=1,
                          out_dir=str(tmp_path / "tune"))
    tuner = tune(request)
    assert [r.status for r in tuner.results] == ["ok"] * 4, [r.reason for r in tuner.results]
    best = tuner.best()
    assert best.tokens_per_s == max(r.tokens_per_s for r in tuner.results)
    assert all(r.memory and r.estimate for r in tuner.results)  # measured and estimated, side by side
    assert (tuner.directory / "best.yaml").is_file()
    dry = cli("launch", str(tuner.directory / "best.yaml"), "--cpu", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    again = tune(TuneRequest(**{**vars(request), "out_dir": str(tmp_path / "again")}))
    assert [r.cached for r in again.results] == [True] * 4
    assert again.best().candidate == best.candidate
    drawn = cli("report", str(tuner.directory))
    assert drawn.exit_code == 0, drawn.stderr
    for name in ("throughput.png", "memory.png", "loss.png", "report.md"):
        assert (tuner.directory / name).is_file()
    header = (tuner.directory / "throughput.png").read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24])[0] > 300


@pytest.mark.slow
def test_a_hanging_trial_ends_at_its_timeout_and_the_tune_goes_on(tmp_path):
    request = TuneRequest(strategies=("ddp",), micro_batches=(1, 2), base=base(tmp_path, stall_at="1:2"), steps=3,
                          warmup=1, trial_timeout=20, out_dir=str(tmp_path / "tune"), cache=False)
    tuner = tune(request)
    assert [r.status for r in tuner.results] == ["timeout", "timeout"]
    assert all(20 <= r.seconds < 60 for r in tuner.results)
    assert not processes.descendants(os.getpid())  # nothing of any trial is left
    assert tuner.best() is None and not (tuner.directory / "best.yaml").exists()
    trials = json.loads((tuner.directory / "tune.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["timeout", "timeout"]


@pytest.mark.slow
def test_bayes_searches_the_engines_knobs_with_optuna(tmp_path):
    request = TuneRequest(strategies=("ddp",), micro_batches=(1, 2), base=base(tmp_path), steps=2, warmup=1,
                          search="bayes", trials=3, out_dir=str(tmp_path / "tune"), cache=False, seed=3)
    tuner = tune(request)
    assert len(tuner.results) == 3 and all(r.status == "ok" for r in tuner.results)
    assert all(dict(r.candidate.knobs).keys() == {"ddp.bucket_cap_mb"} for r in tuner.results)
    assert load_strategy(str(tuner.directory / "best.yaml")).ddp.bucket_cap_mb == \
        dict(tuner.best().candidate.knobs)["ddp.bucket_cap_mb"]


def test_report_refuses_a_directory_without_measurements(cli, tmp_path):
    result = cli("report", str(tmp_path))
    assert result.exit_code == 2 and "no tune.json" in result.stderr


@pytest.mark.parametrize("engine", ["deepspeed", "ddp", "horovod"])
def test_every_tunable_knob_renders_at_both_ends_of_its_range(engine):
    """What bayes may suggest must be what the strategy schema accepts (integers where it wants them)."""
    from launcher.render import Cluster, render
    from launcher.spec import engines

    strategy = {"deepspeed": "zero2", "ddp": "ddp", "horovod": "horovod"}[engine]
    for key, knob in engines.get(engine).tunable.items():
        for end in (knob.low, knob.high, (knob.low * knob.high) ** 0.5):
            value = round(end / knob.multiple) * knob.multiple if knob.integer else end
            render(load_strategy(strategy, [f"{key}={value!r}"]), Cluster(2))


@pytest.mark.slow
def test_the_loss_objective_searches_learning_rate_and_warmup(tmp_path):
    request = TuneRequest(strategies=("ddp",), micro_batches=(2,), base=base(tmp_path), steps=3, warmup=2,
                          search="bayes", objective="loss", trials=2, out_dir=str(tmp_path / "tune"), cache=False)
    tuner = tune(request)
    assert [r.status for r in tuner.results] == ["ok", "ok"]
    assert all(dict(r.candidate.knobs).keys() == {"optimizer.lr", "scheduler.warmup_ratio"} for r in tuner.results)
    best = tuner.best()
    assert best.loss == min(r.loss for r in tuner.results)
    assert load_strategy(str(tuner.directory / "best.yaml")).optimizer.lr == dict(best.candidate.knobs)["optimizer.lr"]
