"""The `cade` group: every area's commands, with errors mapped to exit codes by `exit_for`."""

from __future__ import annotations

import difflib
from typing import Any, NoReturn

import click

from cade_cli import __version__
from cade_cli.cli import error_json, exit_for, wants_json
from cade_cli.errors import EXIT_CODES, CadeError
from cade_cli.plugins import CLI_MODULES, load

_JSON = "cade.json"  # ctx.meta key: the command line asked for --json


class CadeGroup(click.Group):
    """Turns CadeError and Ctrl-C, while the arguments are parsed or a command runs, into
    their message on stderr and their exit code (`cade_cli.cli.exit_for`); with --json,
    usage errors too, as the one JSON error shape."""

    loaded: set[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loaded = set()

    def make_context(self, info_name: str | None, args: list[str], *rest: Any,
                     **kwargs: Any) -> click.Context:
        as_json = wants_json(args)  # before parsing consumes them
        try:
            ctx = super().make_context(info_name, args, *rest, **kwargs)
        except KeyboardInterrupt as err:
            _exit(err, as_json)
        ctx.meta[_JSON] = as_json
        return ctx

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        for module, names in CLI_MODULES.items():
            if name in names:
                self.load_commands(module)
        return super().get_command(ctx, name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not ctx.resilient_parsing and self.get_command(ctx, name) is None:
            known = [command for names in CLI_MODULES.values() for command in names]
            close = difflib.get_close_matches(name, known, n=1)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
        return super().resolve_command(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in CLI_MODULES:
            self.load_commands(module)
        return super().list_commands(ctx)

    def load_commands(self, module: str) -> None:
        """Register the commands of `module` (once; see plugins.CLI_MODULES)."""
        if module not in self.loaded:
            load(module, "register")(self)
            self.loaded.add(module)

    def invoke(self, ctx: click.Context) -> Any:
        as_json = bool(ctx.meta.get(_JSON))
        try:
            return super().invoke(ctx)
        except (CadeError, KeyboardInterrupt) as err:
            _exit(err, as_json)
        except click.ClickException as err:
            if not as_json:
                raise  # click prints its usage message
            click.echo(error_json("UsageError", err.format_message(), None, err.exit_code),
                       err=True)
            raise click.exceptions.Exit(err.exit_code) from None


def _exit(err: CadeError | KeyboardInterrupt, as_json: bool) -> NoReturn:
    text, code = exit_for(err, as_json)
    click.echo(text, err=True)
    raise click.exceptions.Exit(code)


_HELP = ("Experiment management for Slurm and PBS clusters, with no server to run.\n\n"
         "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + ".")


@click.group(cls=CadeGroup, help=_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cade")
def cli() -> None:
    pass
