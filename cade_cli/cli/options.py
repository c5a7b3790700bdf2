"""Options shared by the commands of several areas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

_Command = TypeVar("_Command", bound=Callable[..., Any])

# The ledger every command reads or writes; CADE_LEDGER works for all of them alike.
ledger_option = click.option(
    "--ledger", "ledger_path", envvar="CADE_LEDGER", default=None,
    type=click.Path(dir_okay=False),
    help="The ledger file (default: $CADE_LEDGER, else .cade/ledger.db).")


def json_option(help_text: str = "Print JSON.") -> Callable[[_Command], _Command]:
    """--json: the result as JSON on stdout; an error as one JSON object on stderr
    (`cade_cli.cli.error_json`)."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)

