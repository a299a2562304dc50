"""The ``launchdeck`` root: a tiny click group whose subcommands load only when invoked."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from .. import __version__
from ..errors import LaunchdeckError

# name -> ("module:attribute", one-line help); each module holds one thin command. The help is kept
# here so that `launchdeck --help` lists the commands without importing any of them.
COMMANDS = {
    "strategies": ("launcher.cli.strategies:strategies", "List the catalog's strategies: name, engine, description."),
    "show": ("launcher.cli.show:show", "Print a strategy after `extends` and overrides, as YAML."),
    "render": ("launcher.cli.render:render", "Render a strategy into DeepSpeed JSON / Horovod / DDP settings."),
    "estimate": ("launcher.cli.estimate:estimate_command", "Per-rank memory of a strategy (or all) for a model, "
                 "and whether it fits."),
    "launch": ("launcher.cli.launch:launch", "Train a strategy (payload or your script) and keep a run record."),
    "tune": ("launcher.cli.tune:tune_command", "Measure strategies on real trials; the fastest that fits: best.yaml."),
    "report": ("launcher.cli.report:report", "report.md and PNG plots from tune directories, benches and runs."),
    "data": ("launcher.cli.data:data", "Prepare training text once as a memory-mapped token file."),
    "hostfile": ("launcher.cli.hostfile:hostfile", "Write, convert and check hostfiles."),
    "slurm": ("launcher.cli.slurm:slurm", "Print an sbatch script that trains a strategy."),
    "k8s": ("launcher.cli.k8s:k8s", "Write Kubernetes manifests (PyTorchJob, MPIJob, TrainJob) for a strategy."),
    "doctor": ("launcher.cli.doctor:doctor", "Check every host of a hostfile before a launch: one table, a verdict."),
}


class UserError(click.ClickException):
    """Bad input: one line on stderr, exit code 2."""

    exit_code = 2


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand runs (or its help is shown)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Like click's, but every error is one line on stderr and exit code 2 (130 on Ctrl-C)."""
        try:
            code = super().main(args, prog_name or "launchdeck", complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            where = exc.ctx.command_path if getattr(exc, "ctx", None) else "launchdeck"
            hint = " (see --help)" if isinstance(exc, click.UsageError) else ""
            click.echo(f"{where}: error: {' '.join(exc.format_message().split())}{hint}", err=True)
            code = 2
        except click.Abort:
            click.echo("launchdeck: aborted", err=True)
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LaunchdeckError as exc:
            raise UserError(" ".join(str(exc).split())) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="launchdeck")
def main() -> None:
    """launchdeck: named distributed-training strategies, rendered and launched for real.

    \b
    Examples:
      launchdeck strategies
      launchdeck show zero3
      launchdeck render zero3 --world-size 8 -o ds_config.json
    """
