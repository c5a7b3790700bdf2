"""Options shared by the commands of several areas."""

from __future__ import annotations

import click

# The ledger every command reads or writes; CADE_LEDGER works for all of them alike.
ledger_option = click.option(
    "--ledger", "ledger_path", envvar="CADE_LEDGER", default=None,
    type=click.Path(dir_okay=False),
    help="The ledger file (default: $CADE_LEDGER, else .cade/ledger.db).")
