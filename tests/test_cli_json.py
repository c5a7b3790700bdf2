"""--json on every command, and the one JSON error shape on stderr: exact output."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import test_cli_run
from click.testing import CliRunner, Result
from test_cli_run import handmade

from cade_cli.cli import cli
from cade_cli.store.ledger import Ledger

env = test_cli_run.env  # the same fixture: a project folder with spec.yaml


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def leaf_commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    ctx = click.Context(group)
    # list_commands/get_command: `cade` loads a command's module when it is asked for
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            found.update(leaf_commands(command, f"{prefix}{name} "))
        else:
            found[prefix + name] = command
    return found


def test_every_command_takes_json() -> None:
    commands = leaf_commands(cli)
    assert len(commands) == 19  # 17 commands, `templates` being list, show and render
    assert [name for name, command in commands.items()
            if "--json" not in [o for p in command.params for o in p.opts]] == []


def test_pause_resume_cancel_acknowledge_in_json(env: Path) -> None:
    handmade(env / ".cade" / "ledger.db")
    Ledger(env / ".cade" / "ledger.db").update_experiment(1, state="active")
    assert run("pause", "1", "--json").stdout == (
        '{"experiment": 1, "name": "known", "state": "paused"}\n')
    assert run("resume", "known", "--json").stdout == (
        '{"experiment": 1, "name": "known", "state": "active"}\n')
    assert run("cancel", "1", "--json").stdout == (
        '{"experiment": 1, "name": "known", "state": "canceled"}\n')


def test_errors_with_json_are_one_object_on_stderr(env: Path) -> None:
    missing = run("status", "--json")
    assert (missing.exit_code, missing.stdout) == (4, "")
    assert json.loads(missing.stderr) == {"error": {
        "type": "LedgerError", "message": f"no ledger at {env / '.cade' / 'ledger.db'}",
        "hint": "submit an experiment first (cade submit SPEC), or pass --ledger / set "
                "CADE_LEDGER", "exit_code": 4}}
    handmade(env / ".cade" / "ledger.db")
    unknown = run("pause", "nope", "--json")
    assert unknown.exit_code == 4 and json.loads(unknown.stderr)["error"]["type"] == "NotFoundError"
    again = run("pause", "1", "--json")  # completed: cannot pause
    assert again.exit_code == 1 and json.loads(again.stderr)["error"]["exit_code"] == 1
    usage = run("status", "\u00b2", "--json")
    assert (usage.exit_code, usage.stderr) == (2, json.dumps({"error": {
        "type": "UsageError",
        "message": "Invalid value for '[EXP]': '\u00b2' is not an experiment id: ids "
                   "are written with the digits 0-9", "hint": None, "exit_code": 2}}) + "\n")
    plain = run("status", "nope")
    assert plain.stderr == ("Error: no experiment with id or name 'nope' in "
                            f"{env / '.cade' / 'ledger.db'}\nhint: `cade status` lists the "
                            "experiments\n")


def test_logs_json_holds_both_streams(env: Path) -> None:
    handmade(env / ".cade" / "ledger.db")
    run_dir = env / "seg"
    run_dir.mkdir()
    (run_dir / "stdout.log").write_text("out\n")
    (run_dir / "stderr.log").write_bytes(b"err \xff\n")
    ledger = Ledger(env / ".cade" / "ledger.db")
    with ledger.transaction():
        ledger.insert_segment(experiment=1, trial=1, index=1, state="completed",
                              backend="local", job_name="cade-1-1-1", run_dir=str(run_dir))
    assert json.loads(run("logs", "1.1", "--json").stdout) == {
        "experiment": 1, "trial": 1, "segment": 1, "state": "completed",
        "run_dir": str(run_dir), "stdout": "out\n", "stderr": "err \ufffd\n"}
    follow = run("logs", "1", "-f", "--json")
    assert follow.exit_code == 2 and json.loads(follow.stderr)["error"] == {
        "type": "UsageError", "message": "--json prints one object: it cannot --follow",
        "hint": None, "exit_code": 2}


def test_top_once_export_report_and_watch_in_json(env: Path) -> None:
    handmade(env / ".cade" / "ledger.db")
    top = json.loads(run("top", "--once", "--no-sync", "--json").stdout)
    assert [(e["id"], e["best_trial"]) for e in top["experiments"]] == [(1, 1)]
    assert top["sync_message"] == ""
    assert [t["state"] for t in top["current"]["trials"]] == ["completed", "errored"]
    assert run("top", "--json").exit_code == 2
    exported = run("export", "1", "--format", "json", "--out", "x", "--json")
    assert exported.stdout == '{"experiment": 1, "files": ["x/metrics.json", "x/params.json"]}\n'
    report = run("report", "1", "--html", "r.html", "--json")
    assert report.stdout == '{"experiment": 1, "files": ["r.html"]}\n'
    assert run("plot", "1", "--json").exit_code == 2
    watched = json.loads(run("watch", "1", "--json").stdout)
    assert watched == {"experiment": 1, "state": "completed", "message": "", "best": {
        "experiment": 1, "trial": 1, "params": {"width": 32}, "metric": 0.5, "length": 5,
        "checkpoint": "/r/trials/1/checkpoints/5"}}


def test_templates_in_json(env: Path) -> None:
    listing = json.loads(run("templates", "list", "--json").stdout)["templates"]
    assert {"base.sh.j2", "slurm.sbatch.j2", "pbs.pbs.j2"} <= {t["name"] for t in listing}
    assert all(t["origin"] == "builtin" and not t["shadowed"] for t in listing)
    shown = json.loads(run("templates", "show", "slurm.sbatch.j2", "--json").stdout)
    assert shown["source"] == run("templates", "show", "slurm.sbatch.j2").stdout
    rendered = json.loads(run("templates", "render", "spec.yaml", "--backend", "local",
                              "--json").stdout)
    assert rendered["backend"] == "local" and rendered["script"].startswith("#!")


@pytest.mark.parametrize("args", [["preview", "spec.yaml", "--json"],
                                  ["submit", "spec.yaml", "--dry-run", "--json", "--config",
                                   "searcher.nope=1"]])
def test_spec_errors_with_json_name_the_spec(env: Path, args: list[str]) -> None:
    (env / "spec.yaml").write_text("name: x\nsearcher: 3\n")
    result = run(*args)
    error = json.loads(result.stderr)["error"]
    assert (result.exit_code, error["type"], error["exit_code"]) == (2, "SpecError", 2)
    assert "spec.yaml" in error["message"]


def test_server_lists_and_a_wrong_stop_in_json(env: Path) -> None:
    handmade(env / ".cade" / "ledger.db")
    for kind in ("tensorboard", "notebook"):
        assert run(kind, "--list", "--json").stdout == '{"servers": []}\n'
    refused = CliRunner().invoke(cli, ["notebook", "--stop", "notebook-9", "--json"])
    assert refused.exit_code != 0 and refused.stdout == ""
    assert json.loads(refused.stderr)["error"]["message"]
