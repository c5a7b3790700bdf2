"""The normalised spec stored at submit: sync and the views never re-validate the YAML.

A later release may check a spec more strictly; experiments already recorded must go on.
The tests make a validator stricter (monkeypatch) after recording a real experiment on the
real local backend, then sync it to the end and look at it through the views.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cade_cli.backends import make_scheduler
from cade_cli.cli import cli
from cade_cli.engine import lifecycle as engine
from cade_cli.errors import LedgerError, SpecError
from cade_cli.spec import experiment as spec_module
from cade_cli.spec import stored
from cade_cli.spec.experiment import ExperimentSpec, load_spec, parse_spec
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger
from cade_cli.views.model import read_experiment, rung_ladders, search_plan

ROOT = Path(__file__).resolve().parents[1]
TRAINER = ROOT / "examples" / "synthetic" / "train.py"
SETTINGS = Settings(poll_interval=0, local_slots=2)
SPEC = f"""
name: stored
entrypoint: ["{sys.executable}", "{TRAINER}"]
hyperparameters:
  lr: {{type: log, minval: -3, maxval: -1, base: 10}}
  width: {{type: categorical, vals: [32, 64]}}
searcher:
  name: async_halving
  metric: loss
  num_rungs: 2
  divisor: 2
  max_trials: 2
  max_length: 8
  max_concurrent_trials: 2
resources:
  launcher: none
reproducibility:
  experiment_seed: 3
"""


def every_searcher_spec() -> list[Path]:
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    examples += [ROOT / "examples" / "digits" / "two-nodes.yaml"]
    return examples


@pytest.mark.parametrize("path", every_searcher_spec(), ids=lambda p: p.name)
def test_every_searchers_spec_round_trips_through_json(path: Path) -> None:
    spec = load_spec(path)
    encoded = json.loads(json.dumps(stored.to_json(spec)))
    assert encoded["version"] == stored.VERSION
    rebuilt = stored.from_json(encoded, spec.raw)
    assert rebuilt == spec and rebuilt.raw == spec.raw


def test_the_examples_cover_every_searcher() -> None:
    names = {load_spec(path).searcher.name for path in every_searcher_spec()}
    assert names == set(spec_module.SEARCHER_NAMES)


def test_nested_spaces_scheduler_sections_and_environment_round_trip() -> None:
    text = SPEC.replace("  width:", "  net:\n"
                                    "    depth: {type: int, minval: 1, maxval: 4}\n"
                                    "    act: {type: categorical, vals: [relu, [1, 2]]}\n"
                                    "  width:")
    text += """\
environment:
  environment_variables: [A=1, B=two words]
slurm: {sbatch_args: [--exclusive], slots_per_node: 4, gpu_type: a100}
pbs: {pbsbatch_args: [-l, place=scatter]}
"""
    spec = parse_spec(text)
    assert spec.environment_variables == (("A", "1"), ("B", "two words"))
    assert stored.from_json(json.loads(json.dumps(stored.to_json(spec))), spec.raw) == spec


def test_an_unknown_version_is_refused() -> None:
    spec = parse_spec(SPEC)
    with pytest.raises(LedgerError, match="version 99"):
        stored.from_json({**stored.to_json(spec), "version": 99})


def stricter_searcher_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later release's rule: the metric must start with `val_` (the spec's is `loss`)."""
    original = spec_module.read_searcher

    def stricter(reader: Any) -> dict[str, Any]:
        found = original(reader)
        if not str(found.get("metric", "")).startswith("val_"):
            reader.problems.add(reader.loc, "searcher.metric", "must now start with val_")
        return found
    monkeypatch.setattr(spec_module, "read_searcher", stricter)


def record(tmp_path: Path) -> tuple[Ledger, int, ExperimentSpec]:
    (tmp_path / "spec.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "spec.yaml")
    ledger = Ledger(tmp_path / "state" / "ledger.db")
    return ledger, engine.submit(ledger, spec, "local"), spec


def sync_to_the_end(ledger: Ledger, exp_id: int) -> str:
    scheduler = make_scheduler("local", ledger.state_dir, SETTINGS)
    deadline = time.monotonic() + 120
    try:
        while engine.needs_sync(ledger, ledger.experiment(exp_id)):
            assert time.monotonic() < deadline, "the experiment did not end in 120 s"
            engine.sync(ledger, exp_id, scheduler, SETTINGS)
            time.sleep(0.1)
    finally:
        scheduler.close()
    return ledger.experiment(exp_id).state


@pytest.fixture
def quick_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_STEP_SECONDS", "0")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


@pytest.mark.usefixtures("quick_trials")
def test_a_stricter_check_does_not_stop_a_recorded_experiment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, exp_id, spec = record(tmp_path)
    assert ledger.experiment(exp_id).stored_spec == json.loads(json.dumps(stored.to_json(spec)))
    stricter_searcher_check(monkeypatch)
    with pytest.raises(SpecError, match="must now start with val_"):
        load_spec(tmp_path / "spec.yaml")   # the stricter check is in force
    assert sync_to_the_end(ledger, exp_id) == "completed"
    exp = ledger.experiment(exp_id)
    assert search_plan(exp) is not None
    assert rung_ladders(read_experiment(ledger, exp)) == [[4, 8]]
    shown = CliRunner().invoke(cli, ["status", str(exp_id), "--json", "--ledger", str(ledger.path)],
                               catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    answer = json.loads(shown.output)
    assert answer["experiment"]["state"] == "completed" and len(answer["trials"]) == 2


@pytest.mark.usefixtures("quick_trials")
def test_an_experiment_recorded_before_the_stored_spec_falls_back_to_its_yaml_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, exp_id, spec = record(tmp_path)
    ledger.db.execute("UPDATE experiments SET stored_spec = NULL WHERE id = ?", [exp_id])
    assert ledger.experiment(exp_id).stored_spec is None
    # The first sync validates the YAML once more and keeps the result ...
    engine.sync(ledger, exp_id, make_scheduler("local", ledger.state_dir, SETTINGS), SETTINGS)
    assert stored.from_json(ledger.experiment(exp_id).stored_spec or {}) == spec
    # ... so that a stricter check later changes nothing.
    stricter_searcher_check(monkeypatch)
    assert sync_to_the_end(ledger, exp_id) == "completed"


def test_without_a_stored_spec_a_stricter_check_would_stop_sync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, exp_id, _ = record(tmp_path)
    ledger.db.execute("UPDATE experiments SET stored_spec = NULL WHERE id = ?", [exp_id])
    stricter_searcher_check(monkeypatch)
    exp = ledger.experiment(exp_id)
    assert search_plan(exp) is None   # the views fall back to a ladder from the trials
    with pytest.raises(SpecError, match="must now start with val_"):
        engine.sync(ledger, exp_id, make_scheduler("local", ledger.state_dir, SETTINGS), SETTINGS)
