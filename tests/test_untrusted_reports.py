"""The run directory is a trust boundary: a bad report fails its trial, never the driver.

The real random and ASHA searchers decide; a fake scheduler writes each job's lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_fakes import FakeScheduler, Outcome, make_spec

from cade_cli.backends.base import JobRequest
from cade_cli.engine import lifecycle as engine
from cade_cli.jobs.ingest import MAX_ESCAPED, MAX_LINE, check_length, read_new_lines
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger

SETTINGS = Settings(poll_interval=0, stop_grace=0)


def trial_of(request: JobRequest) -> int:
    return int(request.name.split("-")[2])


def good(request: JobRequest, control: dict[str, Any], metric: float = 0.5) -> Outcome:
    target = control["target_length"]
    ckpt = str(request.run_dir.parents[1] / "checkpoints" / str(target))
    return Outcome([{"kind": "validation", "length": target, "metrics": {"loss": metric}},
                    {"kind": "checkpoint", "length": target, "path": ckpt},
                    {"kind": "segment_end", "length": target}])


def run(tmp_path: Path, behave: Any, max_trials: int = 2, searcher: str = "random",
        extra: str = "", syncs: int = 40) -> tuple[Ledger, int]:
    ledger = Ledger(tmp_path / "state" / "ledger.db")
    spec = make_spec(tmp_path, max_trials=max_trials, searcher=searcher, extra=extra)
    exp_id = engine.submit(ledger, spec, "local")
    scheduler = FakeScheduler(behave=behave)
    for _ in range(syncs):
        if engine.sync(ledger, exp_id, scheduler, SETTINGS).state not in ("pending", "active"):
            break
    return ledger, exp_id


def first_trial_says(lines: list[dict[str, Any]], exit_code: int = 0) -> Any:
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        if trial_of(request) == 1:
            return Outcome(lines, exit_code=exit_code)
        return good(request, control)
    return behave


@pytest.mark.parametrize("length", [10**30, 1e300, -1, 2**63, 2.5, float("inf"), "3"])
def test_an_impossible_length_fails_that_trial_only(tmp_path: Path, length: Any) -> None:
    ledger, exp_id = run(tmp_path, first_trial_says(
        [{"kind": "validation", "length": length, "metrics": {"loss": 0.1}},
         {"kind": "segment_end", "length": 10}]))
    t1, t2 = ledger.trials(exp_id)
    assert (t1.state, t2.state) == ("errored", "completed")
    assert "invalid" in t1.message and "validation" in t1.message
    assert ledger.experiment(exp_id).state == "completed"


def test_a_training_report_with_a_huge_length_fails_the_trial(tmp_path: Path) -> None:
    ledger, exp_id = run(tmp_path, first_trial_says(
        [{"kind": "training", "length": 10**30, "metrics": {"loss": 0.1}}]))
    assert ledger.trial(exp_id, 1).state == "errored"
    assert "outside [0, 2^63)" in ledger.trial(exp_id, 1).message


def test_a_length_past_the_target_is_not_the_best(tmp_path: Path) -> None:
    ledger, exp_id = run(tmp_path, first_trial_says(
        [{"kind": "validation", "length": 20000, "metrics": {"loss": 0.0001}},
         {"kind": "segment_end", "length": 20000}]))
    t1 = ledger.trial(exp_id, 1)
    assert t1.state == "errored" and "past the target 10" in t1.message
    assert t1.best_metric is None and t1.length == 0
    found = engine.best(ledger, exp_id)
    assert found is not None and (found.trial.id, found.length) == (2, 10)


def test_asha_goes_on_when_a_trial_overshoots_its_rung(tmp_path: Path) -> None:
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        if trial_of(request) == 1:
            return Outcome([{"kind": "validation", "length": 20000, "metrics": {"loss": 0.0}},
                            {"kind": "segment_end", "length": 20000}])
        return good(request, control, metric=trial_of(request) / 10)

    ledger, exp_id = _asha(tmp_path, behave)
    exp = ledger.experiment(exp_id)
    assert exp.state == "completed", exp.message
    assert ledger.trial(exp_id, 1).state == "errored"


def _asha(tmp_path: Path, behave: Any) -> tuple[Ledger, int]:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text("""
name: unit
entrypoint: python train.py
hyperparameters:
  x: {type: int, minval: 1, maxval: 100}
searcher:
  name: async_halving
  metric: loss
  max_trials: 4
  max_length: 9
  divisor: 3
  num_rungs: 2
  max_concurrent_trials: 2
resources:
  launcher: none
reproducibility:
  experiment_seed: 5
""")
    from cade_cli.spec.experiment import parse_spec
    ledger = Ledger(tmp_path / "state" / "ledger.db")
    exp_id = engine.submit(ledger, parse_spec(spec_path.read_text(), source=str(spec_path)),
                           "local")
    scheduler = FakeScheduler(behave=behave)
    for _ in range(80):
        if engine.sync(ledger, exp_id, scheduler, SETTINGS).state not in ("pending", "active"):
            break
    return ledger, exp_id


def test_a_late_report_out_of_order_never_becomes_the_best(tmp_path: Path) -> None:
    ledger, exp_id = run(tmp_path, first_trial_says(
        [{"kind": "validation", "length": 8, "metrics": {"loss": 0.5}},
         {"kind": "validation", "length": 3, "metrics": {"loss": 0.0001}},
         {"kind": "segment_end", "length": 8}]))
    t1 = ledger.trial(exp_id, 1)
    assert t1.best_metric == 0.5 and t1.best_length == 8
    assert t1.state == "errored" and "must not go back" in t1.message


def test_non_finite_side_metrics_are_stored_as_null(tmp_path: Path) -> None:
    ledger, exp_id = run(tmp_path, first_trial_says(
        [{"kind": "validation", "length": 10,
          "metrics": {"loss": 0.2, "acc": float("nan"), "big": 10**400}},
         {"kind": "segment_end", "length": 10}]), max_trials=1)
    (row,) = ledger.metrics(exp_id, 1, "validation")
    assert row.values == {"loss": 0.2, "acc": None, "big": None}
    assert ledger.trial(exp_id, 1).state == "completed"


def test_an_oversized_line_fails_the_trial_and_what_follows_is_kept(tmp_path: Path) -> None:
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        if trial_of(request) == 1:
            with open(request.run_dir / "metrics.jsonl", "ab") as handle:
                handle.write(b'{"kind": "training", "pad": "' + b"x" * (2 * MAX_LINE) + b'"}\n')
        return good(request, control)

    ledger, exp_id = run(tmp_path, behave)
    t1 = ledger.trial(exp_id, 1)
    assert t1.state == "errored" and "over the limit" in t1.message
    # The lines after the oversized one were ingested all the same.
    assert [m.length for m in ledger.metrics(exp_id, 1, "validation")] == [10]
    assert ledger.trial(exp_id, 2).state == "completed"


def test_an_oversized_line_is_never_read_whole(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"x" * (3 * MAX_LINE))  # still being written: no newline yet
    assert read_new_lines(path, 0) == []
    with open(path, "ab") as handle:
        handle.write(b"\n{\"kind\": \"blank\"}\n")
    first, second = read_new_lines(path, 0)
    assert first.data is None and first.end_offset == 3 * MAX_LINE + 1
    assert second.data == {"kind": "blank"}


def test_check_length_bounds() -> None:
    assert check_length(10) == (10, "") and check_length(10.0) == (10, "")
    assert check_length(2**63 - 1)[0] == 2**63 - 1
    for bad in (2**63, -1, 1e300, float("nan"), True, None, 2.5):
        assert check_length(bad)[0] is None
    assert check_length(2.5, truncate=True) == (2, "")


def test_a_segment_that_exits_0_short_of_its_target_counts_as_a_restart(
        tmp_path: Path) -> None:
    ledger, exp_id = run(tmp_path, first_trial_says(
        [{"kind": "segment_end", "length": 5}]), extra="max_restarts: 2")
    t1 = ledger.trial(exp_id, 1)
    assert (t1.state, t1.restarts) == ("errored", 3)
    assert len(ledger.segments(exp_id, 1)) == 3
    assert "short of its target 10" in ledger.segments(exp_id, 1)[0].reason


def test_a_negative_segment_end_fails_the_trial_at_once(tmp_path: Path) -> None:
    ledger, exp_id = run(tmp_path, first_trial_says(
        [{"kind": "segment_end", "length": -1}]), extra="max_restarts: 2")
    t1 = ledger.trial(exp_id, 1)
    assert t1.state == "errored" and "outside [0, 2^63)" in t1.message
    assert len(ledger.segments(exp_id, 1)) == 1
    assert ledger.experiment(exp_id).state == "completed"


def test_the_escaped_file_is_read_as_pids_only(tmp_path: Path) -> None:
    """`escaped` (the EXIT trap's list) is in the run directory, the trial's to write too:
    only whole pids count, at most MAX_ESCAPED of them; they reach the trial's message."""
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        if trial_of(request) == 1:
            (request.run_dir / "escaped").write_bytes(
                b"4242\n\x1b]0;title\x07\n12345678901\n-5\n" + b"7\n" * 200)
        return good(request, control)
    ledger, exp_id = run(tmp_path, behave)
    trial, other = ledger.trials(exp_id)
    pids = ", ".join(["4242"] + ["7"] * (MAX_ESCAPED - 4))
    assert trial.state == "completed"
    assert trial.message == (f"segment 1: killed {MAX_ESCAPED - 3} processes that left the "
                             f"job's process group (setsid or a daemon): pid {pids}")
    assert ledger.segments(exp_id, 1)[0].reason == trial.message.removeprefix("segment 1: ")
    assert other.message == ""
