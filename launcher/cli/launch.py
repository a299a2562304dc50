"""``launchdeck launch``: train a strategy on this machine (the payload, or your script after --)."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..plan.request import LaunchRequest
from ..spec.models import PRESETS
from .options import cluster_options, overrides_from, strategy_overrides


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("name")
@click.argument("script", nargs=-1, type=click.UNPROCESSED)
@click.option("--cpu", is_flag=True, envvar="LAUNCHDECK_CPU", help="CPU ranks with gloo even if GPUs are visible.")
@click.option("--nproc", type=click.IntRange(min=1), envvar="LAUNCHDECK_NPROC",
              help="Ranks on this machine (default: all visible GPUs, or 2 on CPU).  [env: LAUNCHDECK_NPROC]")
@click.option("--steps", type=click.IntRange(min=1), envvar="LAUNCHDECK_STEPS", help="Override training.steps.")
@click.option("--model", type=click.Choice(list(PRESETS)), default="tiny", envvar="LAUNCHDECK_MODEL", show_default=True,
              help="Payload model preset.")
@click.option("--data", type=click.Path(exists=True), help="Text file, folder, JSONL with a 'text' field, or a "
              "token file from `launchdeck data prepare` (default: Python's own standard library sources).")
@click.option("--data-workers", type=click.IntRange(min=0), default=1, show_default=True, help="Payload: "
              "DataLoader processes per rank building the next micro batches while it computes (0: on the training "
              "thread). result.json 'input_wait_s' shows how long ranks waited for data.")
@click.option("--prefetch", type=click.IntRange(min=1), default=2, show_default=True,
              help="Payload: micro batches each data worker keeps ready.")
@click.option("--seq-len", type=click.IntRange(min=8), help="Payload sequence length (default: the preset's).")
@strategy_overrides
@click.option("--run-dir", type=click.Path(file_okay=False), help="This run's record directory "
              "(default: runs/<timestamp>-<strategy>).")
@click.option("--save-every", type=click.IntRange(min=0), default=0, help="Checkpoint every K steps "
              "(always at the end).")
@click.option("--resume", metavar="RUN|CKPT|last", help="Continue from the latest complete checkpoint of a run "
              "directory, a checkpoint directory, or 'last' (the newest run of this strategy).")
@cluster_options
@click.option("--hang-timeout", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Across hosts: seconds a rank may stay stopped (SIGSTOP, tty stop) before it is killed and the "
                   "job ends everywhere; 0 never.")
@click.option("--heartbeat-timeout", type=click.FloatRange(min=3), default=10.0, show_default=True,
              help="Across hosts: seconds without a heartbeat from a node's agent before the node counts as lost.")
@click.option("--stall-timeout", type=click.FloatRange(min=0), callback=lambda _c, _p, v: _stall_timeout(v),
              envvar="LAUNCHDECK_STALL_TIMEOUT", help="Seconds a job may go without progress (no rank moves, or "
              "some ranks stay put while the others move) before it counts as stalled: every rank's stack goes to "
              "logs/stall/, the job is stopped everywhere, exit code 19. Default: 10x the longest silence between "
              "two steps, at least 60 s; start-up, the first step and checkpoint saves are never judged. 0: "
              "never.  [env: LAUNCHDECK_STALL_TIMEOUT]")
@click.option("--max-restarts", type=click.IntRange(min=0), default=0, envvar="LAUNCHDECK_MAX_RESTARTS",
              help="When the job fails (a rank exits, hangs or stalls, a node is lost), stop everything and start it "
                   "again from this run's latest complete checkpoint, up to N times; needs --save-every. Every "
                   "attempt is kept (logs/attempt-K/, outcome.json 'attempts').  [env: LAUNCHDECK_MAX_RESTARTS]")
@click.option("--min-nodes", type=click.IntRange(min=1), help="With --max-restarts and a hostfile: restart without "
              "the nodes that were lost or fail preflight, while at least M remain (the hostfile is read again, so "
              "a node that is back rejoins); the global batch stays, grad_accum is solved again. With --launcher "
              "torchrun: the fewest nodes its c10d rendezvous goes on with.")
@click.option("--no-preflight", is_flag=True, help="Across hosts: skip the per-host checks (ssh, versions, GPUs, "
              "port) that run before anything starts.")
@click.option("--check", is_flag=True, help="With --dry-run: also check the config with DeepSpeed's parser.")
@click.option("--dry-run", is_flag=True, help="Print the plan (commands, env, rendezvous) and start nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: the plan as JSON.")
@click.option("--measure-memory", is_flag=True, help="Measure each rank's memory in the second step (peak, "
              "params, grads, optimizer, activations, buffers) into result.json; compare: launchdeck estimate.")
@click.option("--crash-at", metavar="RANK:STEP[:save]", help="Fault drill: RANK exits with code 17 before STEP "
              "(with :save, in the middle of STEP's checkpoint). A restart runs without it.")
@click.option("--stall-at", metavar="RANK:STEP", help="Fault drill: RANK blocks before STEP (alive, runnable), "
              "so the others wait in the next collective: try --stall-timeout.")
def launch(name: str, script: tuple[str, ...], sets: tuple[str, ...], micro_batch: int | None, grad_accum: int | None,
           precision: str | None, cluster: dict, no_preflight: bool, check: bool, dry_run: bool, as_json: bool,
           **request_fields: Any) -> None:
    """Train strategy NAME on this machine and keep a run record.

    \b
    Without SCRIPT, trains launchdeck's payload (a Llama-style LM on local text).
    With `-- SCRIPT ARGS…`, runs your script on every rank instead; it finds the rendered
    config in $LAUNCHDECK_CONFIG (DeepSpeed strategies also get --deepspeed_config PATH).
    Examples:
      launchdeck launch zero3 --steps 50
      launchdeck launch ddp --cpu --nproc 4 --dry-run
      launchdeck launch zero2 -- train.py --epochs 1
      launchdeck launch zero3 --hostfile hosts --launcher pdsh --dry-run
    """
    overrides = tuple(overrides_from(sets, micro_batch, grad_accum, precision))
    request = LaunchRequest(strategy=name, overrides=overrides, script=script, **request_fields, **cluster)
    if dry_run:
        _print_plan(request, check, as_json)
        return
    from ..run import api, execute

    outcome = api.launch(request, check_hosts=not no_preflight, notify=lambda line: click.echo(line, err=True))
    if outcome.returncode:
        click.echo(execute.report(outcome), err=True, nl=False)
        sys.exit(execute.exit_code_for(outcome))
    click.echo(f"launchdeck: run record: {outcome.run_dir}", err=True)


MIN_STALL_TIMEOUT_S = 2.0  # progress arrives once a heartbeat (1 s): a shorter limit would judge the sampling


def _stall_timeout(value: float | None) -> float | None:
    if value is not None and 0 < value < MIN_STALL_TIMEOUT_S:
        raise click.BadParameter(f"{value:g} s is shorter than progress can be seen; use 0 (never) or at least "
                                 f"{MIN_STALL_TIMEOUT_S:g}", param_hint="--stall-timeout")
    return value


def _print_plan(request: LaunchRequest, check: bool, as_json: bool) -> None:
    """--dry-run: the notices, then the plan; ``check`` also runs the engine's own config parser."""
    from .. import render
    from ..plan.prepare import prepare

    prepared = prepare(request)
    for notice in prepared.notices:
        click.echo(notice, err=True)
    if check:
        render.check(prepared.rendered)  # the engine's own parser, at this plan's world size
    click.echo(prepared.plan.to_json() if as_json else prepared.plan.describe(), nl=False)
