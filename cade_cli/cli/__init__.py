"""The `cade` command line: the only package that imports click.

Thin commands over the library: parse, call, render, map errors to exit codes. Each area
keeps its commands in its own module; `group` gathers them into the `cade` group.

This module stays light (neither click nor any command is imported at its top) so that the
one mapping of errors to exit codes, `exit_for`, is in force from the first moment: a Ctrl-C
while the commands are still being imported exits 130 as one at any later moment does.
"""

from __future__ import annotations

import sys
from typing import Any

from cade_cli.errors import INTERRUPTED, CadeError


def exit_for(err: CadeError | KeyboardInterrupt) -> tuple[str, int]:
    """What to print on stderr and the exit code for an error that ends a command."""
    if isinstance(err, KeyboardInterrupt):
        return "Interrupted.", INTERRUPTED
    text = f"Error: {err.message}"
    return (f"{text}\nhint: {err.hint}" if err.hint else text), err.exit_code


def main() -> None:
    try:
        from cade_cli.cli.group import cli

        cli(prog_name="cade")
    except (CadeError, KeyboardInterrupt) as err:  # while importing, or in click's own handling
        text, code = exit_for(err)
        sys.stderr.write(text + "\n")
        sys.exit(code)


def __getattr__(name: str) -> Any:
    # `from cade_cli.cli import cli` (tests, scripts) without importing it here eagerly.
    if name == "cli":
        from cade_cli.cli.group import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    main()
