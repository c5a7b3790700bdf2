"""docs/cli.md against the CLI's own introspection, and shell completion of ids."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import test_cli_run
from click.shell_completion import ShellComplete
from test_cli_json import leaf_commands
from test_cli_run import handmade
from test_ledger_browsing import _ledger_at_version_3

from cade_cli.cli import cli

DOC = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
env = test_cli_run.env


def sections() -> dict[str, str]:
    """`cade X` -> the text of the `###` section whose heading names it."""
    found: dict[str, str] = {}
    for chunk in re.split(r"(?m)^### ", DOC)[1:]:
        heading, _, body = chunk.partition("\n")
        for name in re.findall(r"`cade ([a-z ]+)`", heading):
            found[name] = body
    return found


def mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


@pytest.mark.parametrize("name", sorted(leaf_commands(cli)))
def test_every_command_and_option_is_in_its_section(name: str) -> None:
    body = sections().get(name)
    assert body is not None, f"docs/cli.md has no section for `cade {name}`"
    command = leaf_commands(cli)[name]
    options = [o for p in command.params if isinstance(p, click.Option) for o in p.opts]
    assert [o for o in options if not mentions(body, o)] == []
    arguments = [p.make_metavar(click.Context(command)) for p in command.params
                 if isinstance(p, click.Argument)]
    assert [a for a in arguments if a.strip("[]") not in body] == []


def test_the_group_options_and_completion_are_documented() -> None:
    assert all(mentions(DOC, o) for o in ("--version", "-h", "--help"))
    assert "_CADE_COMPLETE=bash_source cade" in DOC


def _exp_table() -> dict[str, set[str]]:
    rows = re.findall(r"(?m)^\| (optional; omitted: [^|]+|required) \| ([^\n]+) \|$", DOC)
    return {kind.strip(): set(re.findall(r"`([a-z]+)`", commands)) for kind, commands in rows}


def test_the_doc_says_which_commands_need_exp() -> None:
    table = _exp_table()
    takes_exp = {name: [p for p in command.params if p.name == "experiment"
                        and isinstance(p, click.Argument)]
                 for name, command in leaf_commands(cli).items()}
    required = {n for n, p in takes_exp.items() if p and p[0].required}
    optional = {n for n, p in takes_exp.items() if p and not p[0].required}
    assert table["required"] == required
    assert set().union(*(v for k, v in table.items() if k != "required")) == optional


def complete(args: list[str], incomplete: str) -> list[str]:
    shell = ShellComplete(cli, {}, "cade", "_CADE_COMPLETE")
    return [item.value for item in shell.get_completions(args, incomplete)]


def test_experiment_and_trial_ids_complete_from_the_ledger(env: Path) -> None:
    handmade(env / ".cade" / "ledger.db")
    assert complete(["status"], "") == ["1", "known"]
    assert complete(["pause"], "k") == ["known"]
    assert complete(["best"], "2") == []
    assert complete(["logs"], "") == ["1", "2"]
    assert complete(["logs"], "known.") == ["known.1", "known.2"]
    assert complete(["logs"], "1.2") == ["1.2"]
    assert complete(["logs", "--experiment", "1"], "") == ["1", "2"]
    assert complete(["logs", "--experiment"], "") == ["1", "known"]
    other = str(env / "other.db")
    assert complete(["status", "--ledger", other], "") == []  # no ledger there: nothing


def test_completion_never_fails_and_never_writes(env: Path) -> None:
    (env / "bad.db").write_bytes(b"garbage" * 500)
    assert complete(["status", "--ledger", str(env / "bad.db")], "") == []
    old = env / "old.db"
    _ledger_at_version_3(old)
    before = old.read_bytes()
    assert complete(["logs", "--ledger", str(old)], "") == []   # it has no trials
    assert complete(["status", "--ledger", str(old)], "") == ["1", "old"]
    assert old.read_bytes() == before   # not migrated, not touched


def test_completion_after_a_misspelt_command_offers_the_group_options_and_raises_nothing() -> None:
    completion = ShellComplete(cli, {}, "cade", "_CADE_COMPLETE")
    assert [item.value for item in completion.get_completions(["submt"], "--")] == ["--version", "--help"]
