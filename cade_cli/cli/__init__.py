"""The `cade` command line: the only package that imports click.

Thin commands over the library: parse, call, render, map errors to exit codes. Each area
keeps its commands in its own module; `group` gathers them into the `cade` group.

This module stays light (neither click nor any command is imported at its top) so that the
one mapping of errors to exit codes, `exit_for`, is in force from the first moment: a Ctrl-C
while the commands are still being imported exits 130 as one at any later moment does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from cade_cli import interrupts
from cade_cli.errors import INTERRUPTED, CadeError


def exit_for(err: CadeError | KeyboardInterrupt, as_json: bool = False) -> tuple[str, int]:
    """What to print on stderr and the exit code for an error that ends a command; with
    `as_json` (the command was given --json), the one JSON error shape (`error_json`)."""
    if isinstance(err, KeyboardInterrupt):
        kind, message, hint, code = "Interrupted", "Interrupted.", None, INTERRUPTED
    else:
        kind, message, hint, code = type(err).__name__, err.message, err.hint, err.exit_code
    if as_json:
        return error_json(kind, message, hint, code), code
    if isinstance(err, KeyboardInterrupt):
        return message, code
    text = f"Error: {message}"
    return (f"{text}\nhint: {hint}" if hint else text), code


def error_json(kind: str, message: str, hint: str | None, code: int) -> str:
    """`{"error": {"type", "message", "hint", "exit_code"}}` on one line: every error of a
    command given --json, a usage error (type "UsageError", exit 2) included."""
    return json.dumps({"error": {"type": kind, "message": message, "hint": hint,
                                 "exit_code": code}})


def wants_json(args: Sequence[str]) -> bool:
    """Whether a command line asks for JSON (`--json` before any `--`)."""
    options = list(args)
    return "--json" in (options[:options.index("--")] if "--" in options else options)


def main() -> None:
    try:
        interrupts.install()
        from cade_cli.cli.group import cli

        cli(prog_name="cade")
    except (CadeError, KeyboardInterrupt) as err:  # while importing, or in click's own handling
        _leave(err)
    except Exception:
        if not interrupts.noted():
            raise  # a bug: its traceback is wanted
        _leave(KeyboardInterrupt())  # a Ctrl-C that CPython wrapped (see cade_cli.interrupts)


def _leave(err: CadeError | KeyboardInterrupt) -> NoReturn:
    text, code = exit_for(err, wants_json(sys.argv[1:]))
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
