"""The `cade` group: every area's commands, with errors mapped to exit codes by `exit_for`."""

from __future__ import annotations

from typing import Any, NoReturn

import click

from cade_cli import __version__
from cade_cli.cli import exit_for
from cade_cli.errors import EXIT_CODES, CadeError
from cade_cli.plugins import CLI_MODULES, load


class CadeGroup(click.Group):
    """Turns CadeError and Ctrl-C, while the arguments are parsed or a command runs, into
    their message on stderr and their exit code (`cade_cli.cli.exit_for`)."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as err:
            _exit(err)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CadeError, KeyboardInterrupt) as err:
            _exit(err)


def _exit(err: CadeError | KeyboardInterrupt) -> NoReturn:
    text, code = exit_for(err)
    click.echo(text, err=True)
    raise click.exceptions.Exit(code)


_HELP = ("Experiment management for Slurm and PBS clusters, with no server to run.\n\n"
         "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + ".")


@click.group(cls=CadeGroup, help=_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cade")
def cli() -> None:
    pass


def _register() -> None:
    # Imported here so that each area's module stays independent of the others.
    for module in CLI_MODULES:
        load(module, "register")(cli)


_register()
