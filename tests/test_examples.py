"""Every example spec loads, previews, simulates, and documents how to run it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cade_cli.cli import cli
from cade_cli.search.plan import preview
from cade_cli.spec.experiment import load_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPECTED = {
    "grid.yaml": "grid", "random.yaml": "random", "asha.yaml": "async_halving",
    "asha-stopping.yaml": "async_halving", "adaptive-aggressive.yaml": "adaptive_asha",
    "adaptive-standard.yaml": "adaptive_asha", "adaptive-conservative.yaml": "adaptive_asha",
    "pbt.yaml": "pbt",
}
SPECS = sorted(EXAMPLES.glob("*.yaml"))


def test_the_documented_examples_exist() -> None:
    assert set(EXPECTED) <= {path.name for path in SPECS}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_example_loads_and_says_how_to_run_it(path: Path) -> None:
    spec = load_spec(path)
    if path.name in EXPECTED:
        assert spec.searcher.name == EXPECTED[path.name]
    header = path.read_text().split("\nname:")[0]
    assert f"cade preview examples/{path.name}" in header
    assert f"cade simulate examples/{path.name} --objective" in header
    script = Path(spec.workdir) / spec.entrypoint[-1]
    assert script.is_file(), f"{path.name}: entrypoint {script} missing"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_example_previews_and_simulates(path: Path) -> None:
    runner = CliRunner()
    planned = runner.invoke(cli, ["preview", str(path), "--json"])
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    assert plan["total_trials"] == preview(load_spec(path)).total_trials

    simulated = runner.invoke(cli, ["simulate", str(path), "--objective",
                                    "cade_cli.search.objectives:unstable_power_law", "--json"])
    assert simulated.exit_code == 0, simulated.output
    result = json.loads(simulated.stdout)
    assert result["best"] is not None
    assert len(result["trials"]) == plan["total_trials"]
    lengths = [length for length, _ in plan_ends(plan)]
    assert all(t["final_length"] in lengths or t["state"] == "errored"
               for t in result["trials"])

    table = runner.invoke(cli, ["simulate", str(path), "--objective",
                                "cade_cli.search.objectives:power_law"])
    assert table.exit_code == 0 and "Best: trial" in table.stdout


def plan_ends(plan: dict[str, list[dict[str, int]]]) -> list[tuple[int, int]]:
    return [(row["length"], row["trials"]) for row in plan["plan"]]
