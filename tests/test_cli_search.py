"""`cade preview` and `cade simulate` through click's CliRunner."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cade_cli.cli import cli

GRID_SPEC = """\
name: tiny-grid
entrypoint: python3 train.py
hyperparameters:
  x:
    type: int
    minval: 1
    maxval: 3
    count: 3
  opt:
    type: const
    val: sgd
searcher:
  name: grid
  metric: validation_loss
  max_length: 10
  max_concurrent_trials: 2
"""

ASHA_SPEC = """\
name: tiny-asha
entrypoint: python3 train.py
reproducibility:
  experiment_seed: 7
hyperparameters:
  lr:
    type: log
    minval: -4
    maxval: -1
    base: 10
searcher:
  name: async_halving
  metric: validation_loss
  num_rungs: 3
  divisor: 3
  max_trials: 9
  max_length: 9
  max_concurrent_trials: 3
"""

_module_names = itertools.count()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.yaml").write_text(GRID_SPEC)
    (tmp_path / "asha.yaml").write_text(ASHA_SPEC)
    return tmp_path


def objective_module(directory: Path, body: str) -> str:
    """Write a fresh module (fresh name: imported modules are cached) and return its name."""
    name = f"objective_{next(_module_names)}_{directory.name.replace('-', '_')}"
    (directory / f"{name}.py").write_text(body)
    return name


def invoke(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_preview_json_is_the_plan(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["preview", "asha.yaml", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert isinstance(plan.pop("note"), str)
    assert plan == {
        "searcher": "async_halving",
        "length_unit": "batches",
        "brackets": [{"rungs": [1, 3, 9], "max_trials": 9, "max_concurrent_trials": 3}],
        "plan": [{"length": 1, "trials": 6}, {"length": 3, "trials": 2},
                 {"length": 9, "trials": 1}],
        "total_length": 6 * 1 + 2 * 3 + 9,
        "total_trials": 9,
        "sampler": "random",
    }
    assert result.stderr == ""


def test_preview_table(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["preview", "asha.yaml"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "async_halving" in out and "1 3 9" in out
    assert "Total length trained: 21 batches" in out
    assert "Concurrency:" in out


@pytest.mark.parametrize("extra, settings, line", [
    ("packing: {slots_per_job: 4}\n", "", "Packing: 4 slots per job, 4 trials per job"),
    ("job_arrays: true\n", "", ("Job arrays: first segments in arrays of at most the scheduler's "
                               "limit")),
    ("", "job_arrays: true\nmax_array_size: 50\n",
     "Job arrays: first segments in arrays of at most 50"),
    ("", "", None),
])
def test_preview_says_how_trials_go_to_the_scheduler(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, extra: str, settings: str,
        line: str | None) -> None:
    (workdir / "settings.yaml").write_text(settings)
    monkeypatch.setenv("CADE_CONFIG", str(workdir / "settings.yaml"))
    (workdir / "jobs.yaml").write_text(ASHA_SPEC + extra)
    result = CliRunner().invoke(cli, ["preview", "jobs.yaml"])
    assert result.exit_code == 0, result.output
    found = [text for text in result.stdout.splitlines() if text.startswith(("Packing", "Job arr"))]
    assert found == ([line] if line else [])


def test_preview_config_override(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["preview", "grid.yaml", "--json",
                                      "--config", "searcher.max_length=20"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total_length"] == 3 * 20


def test_simulate_json_exact(workdir: Path) -> None:
    module = objective_module(workdir, "def f(params, length, trial):\n"
                                       "    return params['x'] + length / 100\n")
    result = CliRunner().invoke(cli, ["simulate", "grid.yaml", "--objective", f"{module}:f",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "trials": [{"trial": x, "params": {"opt": "sgd", "x": x},
                    "validations": [[10, x + 0.1]], "final_length": 10,
                    "state": "completed"} for x in (1, 2, 3)],
        "best": {"trial": 1, "metric": 1.1, "length": 10},
        "total_length": 30,
        "makespan": 20,
        "finished": True,
    }


def test_simulate_options(workdir: Path) -> None:
    module = objective_module(workdir, "def f(params, length, trial):\n"
                                       "    if params['x'] == 2 and length > 4:\n"
                                       "        raise ValueError('diverged')\n"
                                       "    return float(params['x'])\n")
    result = CliRunner().invoke(cli, ["simulate", "grid.yaml", "--objective", f"{module}:f",
                                      "--workers", "1", "--validation-period", "4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["validations"] for t in data["trials"]] == [
        [[4, 1.0], [8, 1.0], [10, 1.0]], [[4, 2.0]], [[4, 3.0], [8, 3.0], [10, 3.0]]]
    assert [t["state"] for t in data["trials"]] == ["completed", "errored", "completed"]
    assert [t["final_length"] for t in data["trials"]] == [10, 8, 10]
    assert data["makespan"] == 28


def test_simulate_says_why_the_objective_failed(workdir: Path) -> None:
    module = objective_module(workdir, "def f(params, length):\n    return 1.0\n")
    result = CliRunner().invoke(cli, ["simulate", "grid.yaml", "--objective", f"{module}:f"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:3] == [
        ("Trial 1 errored at length 10: TypeError: f() takes 2 positional arguments but 3 were given "
        "(2 more errored)"),
        "No trial reported a usable metric."]


def test_simulate_seed_defaults_to_the_experiment_seed(workdir: Path) -> None:
    def run(*extra: str) -> dict[str, object]:
        result = CliRunner().invoke(cli, ["simulate", "asha.yaml", "--objective",
                                          "cade_cli.search.objectives:power_law", "--json", *extra])
        assert result.exit_code == 0, result.output
        data: dict[str, object] = json.loads(result.stdout)
        return data

    assert run() == run("--seed", "7")
    assert run() != run("--seed", "8")


def test_simulate_summary(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "asha.yaml", "--objective",
                                      "cade_cli.search.objectives:power_law"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "tiny-asha: simulated async_halving search, seed 7: 9 trials" in out
    assert "Best: trial" in out and "lr" in out
    assert "Trials by final length" in out and "makespan" in out
    assert result.stderr == ""        # no progress bar: not a terminal


@pytest.mark.parametrize(("objective", "message"), [
    ("no_such_module_here:f", "cannot import objective module 'no_such_module_here'"),
    ("cade_cli.search.objectives:missing", "has no function 'missing'"),
    ("power_law", "is not MODULE:FUNC"),
])
def test_bad_objective_is_exit_2(workdir: Path, objective: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["simulate", "grid.yaml", "--objective", objective])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and message in result.stderr


def test_objective_module_that_fails_to_import(workdir: Path) -> None:
    module = objective_module(workdir, "raise RuntimeError('no data')\n")
    result = CliRunner().invoke(cli, ["simulate", "grid.yaml", "--objective", f"{module}:f"])
    assert result.exit_code == 2
    assert "RuntimeError: no data" in result.stderr


def test_objective_returning_a_non_number(workdir: Path) -> None:
    module = objective_module(workdir, "def f(params, length, trial):\n    return 'low'\n")
    result = CliRunner().invoke(cli, ["simulate", "grid.yaml", "--objective", f"{module}:f",
                                      "--json"])
    assert result.exit_code == 2
    assert result.stdout == "" and "must return a number" in result.stderr


@pytest.mark.parametrize("command", [["preview"], ["simulate", "--objective", "m:f"]])
def test_bad_spec_names_file_and_line(workdir: Path, command: list[str]) -> None:
    (workdir / "bad.yaml").write_text(GRID_SPEC.replace("max_length: 10", "max_length: -3"))
    result = CliRunner().invoke(cli, [command[0], "bad.yaml", *command[1:]])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert "bad.yaml:15" in result.stderr and "max_length" in result.stderr


def test_missing_spec_file(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["preview", "nope.yaml"])
    assert result.exit_code == 2 and "nope.yaml" in result.stderr


@pytest.mark.parametrize("command", ["preview", "simulate"])
def test_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "SPEC" in result.stdout and "--json" in result.stdout


def test_simulate_requires_an_objective(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "grid.yaml"])
    assert result.exit_code == 2 and "--objective" in result.stderr


def test_progress_bar_only_on_a_terminal_after_a_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    from cade_cli.views import search_text

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with search_text.ProgressBar() as bar:
        bar(0.5)
    assert isinstance(bar, search_text.ProgressBar) and bar.progress is None

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with search_text.ProgressBar() as bar:
        bar(0.5)                                   # too early: nothing shown yet
        assert isinstance(bar, search_text.ProgressBar) and bar.progress is None
        monkeypatch.setattr(search_text, "PROGRESS_DELAY", 0.0)
        bar(0.5)
        assert bar.progress is not None
        assert bar.progress.tasks[0].completed == 0.5
