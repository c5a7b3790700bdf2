"""The `cade` command line: the only package that imports click.

Thin commands over the library: parse, call, render, map errors to exit codes. Each area
keeps its commands in its own module and registers them here.
"""

from __future__ import annotations

from typing import Any

import click

from cade_cli import __version__
from cade_cli.errors import CadeError
from cade_cli.plugins import CLI_MODULES, load


class CadeGroup(click.Group):
    """Turns CadeError into `Error: ...` + `hint: ...` on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CadeError as err:
            click.echo(f"Error: {err.message}", err=True)
            if err.hint:
                click.echo(f"hint: {err.hint}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=CadeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cade")
def cli() -> None:
    """Experiment management for Slurm and PBS clusters, with no server to run.

    Exit codes: 0 success; 1 experiment ended without completing; 2 invalid input;
    3 scheduler error; 4 ledger error; 5 launch error; 130 interrupted.
    """


def _register() -> None:
    # Imported here so that each area's module stays independent of the others.
    for module in CLI_MODULES:
        load(module, "register")(cli)


_register()


def main() -> None:
    cli(prog_name="cade")


if __name__ == "__main__":  # pragma: no cover
    main()
