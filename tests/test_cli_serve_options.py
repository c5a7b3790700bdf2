"""`cade tensorboard` / `cade notebook` options through click's CliRunner: exact output."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cade_cli.cli import cli


@pytest.mark.parametrize("command", ["tensorboard", "notebook"])
def test_stop_and_list_together_are_refused(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--stop", "x", "--list"], prog_name="cade")
    assert (result.exit_code, result.output) == (2, (
        f"Usage: cade {command} [OPTIONS]{' [EXP]...' if command == 'tensorboard' else ''}\n"
        f"Try 'cade {command} --help' for help.\n\n"
        "Error: --stop and --list are two requests: give one of them\n"))
