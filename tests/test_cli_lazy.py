"""`cade` imports only the module of the command it runs (plugins.CLI_MODULES)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cade_cli.plugins import CLI_MODULES, load

ROOT = Path(__file__).resolve().parents[1]
COMMAND_MODULES = set(CLI_MODULES)


@pytest.mark.parametrize("module", sorted(CLI_MODULES))
def test_each_module_adds_the_commands_it_is_listed_with(module: str) -> None:
    group = click.Group()
    load(module, "register")(group)
    assert sorted(group.commands) == sorted(CLI_MODULES[module])


def modules_loaded_by(*argv: str) -> set[str]:
    """The modules a fresh interpreter holds after `cade ARGV` ran."""
    script = ("import json, sys\nfrom cade_cli.cli import cli\n"
              f"try:\n    cli.main({list(argv)!r}, standalone_mode=False)\n"
              "except SystemExit:\n    pass\nprint(json.dumps(sorted(sys.modules)))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, check=True, cwd=ROOT)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_top_loads_neither_the_engine_nor_rich_nor_jinja2() -> None:
    loaded = modules_loaded_by("top", "--help")
    assert "cade_cli.cli.view_cmds" in loaded
    assert not loaded & {"cade_cli.engine", "rich", "jinja2"}
    assert not loaded & (COMMAND_MODULES - {"cade_cli.cli.view_cmds"})


def test_status_loads_its_module_only() -> None:
    loaded = modules_loaded_by("status", "--help")
    assert loaded & COMMAND_MODULES == {"cade_cli.cli.read_cmds"}
    assert not loaded & {"cade_cli.engine", "rich", "jinja2", "yaml"}


@pytest.mark.parametrize("command", [("status", "1"), ("best", "1"), ("top", "1", "--once")])
def test_reading_ended_experiments_loads_no_engine(tmp_path: Path, command: tuple[str, ...]) -> None:
    from test_cli_run import handmade

    handmade(tmp_path / "ledger.db")   # one completed experiment, no live job: nothing to sync
    loaded = modules_loaded_by(*command, "--ledger", str(tmp_path / "ledger.db"))
    assert "cade_cli.engine.lifecycle" not in loaded and "jinja2" not in loaded
    if command[0] == "status":
        assert not loaded & {"cade_cli.engine", "rich", "yaml"}


def test_help_lists_every_command() -> None:
    from cade_cli.cli import cli

    listed = click.Context(cli).command.list_commands(click.Context(cli))
    assert sorted(listed) == sorted(name for names in CLI_MODULES.values() for name in names)
