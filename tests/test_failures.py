"""Failure handling: restarts, preemption, malformed reports, invalid hyperparameters.

The real random searcher decides; a fake scheduler plays each job's fate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_fakes import FakeScheduler, Outcome, make_spec, spec_text

from cade_cli.backends.base import JobRequest, JobState
from cade_cli.engine import lifecycle as engine
from cade_cli.spec.experiment import parse_spec
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger

SETTINGS = Settings(poll_interval=0, stop_grace=0)


def good(request: JobRequest, control: dict[str, Any], metric: float = 0.5) -> Outcome:
    target = control["target_length"]
    ckpt = str(request.run_dir.parents[1] / "checkpoints" / str(target))
    return Outcome([{"kind": "validation", "length": target, "metrics": {"loss": metric}},
                    {"kind": "checkpoint", "length": target, "path": ckpt},
                    {"kind": "segment_end", "length": target}])


def trial_of(request: JobRequest) -> int:
    return int(request.name.split("-")[2])


def two_rung_asha(tmp_path: Path, trials: int, extra: str = "") -> Any:
    """ASHA over lengths 4 and 8 (divisor 2), every trial running at once."""
    text = spec_text(tmp_path, searcher="async_halving", max_trials=trials, max_length=8,
                     concurrency=trials, extra=extra)
    return parse_spec(text.replace("  max_concurrent_trials",
                                   "  num_rungs: 2\n  divisor: 2\n  max_concurrent_trials"),
                      source="spec.yaml")


def run(tmp_path: Path, behave: Any, max_trials: int = 2, extra: str = "",
        syncs: int = 20, spec: Any = None) -> tuple[Ledger, int, FakeScheduler]:
    ledger = Ledger(tmp_path / "state" / "ledger.db")
    spec = spec or make_spec(tmp_path, max_trials=max_trials, extra=extra)
    exp_id = engine.submit(ledger, spec, "local")
    scheduler = FakeScheduler(behave=behave)
    for _ in range(syncs):
        if engine.sync(ledger, exp_id, scheduler, SETTINGS).state not in ("pending", "active"):
            break
    return ledger, exp_id, scheduler


def test_a_failing_trial_restarts_up_to_max_restarts_then_errors(tmp_path: Path) -> None:
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        if trial_of(request) == 1:
            return Outcome([{"kind": "segment_end", "length": 0}], exit_code=3,
                           state=JobState.FAILED)
        return good(request, control)

    ledger, exp_id, _scheduler = run(tmp_path, behave, extra="max_restarts: 2")
    t1, t2 = ledger.trials(exp_id)
    assert (t1.state, t1.restarts, t1.closed) == ("errored", 3, True)
    assert "after 2 restarts" in t1.message and "exit code 3" in t1.message
    assert [s.state for s in ledger.segments(exp_id, 1)] == ["failed"] * 3
    assert t2.state == "completed"
    exits = [e.event for e in ledger.events(exp_id) if e.event["op"] == "exit"]
    assert exits == [{"op": "exit", "trial": 1, "reason": "errored"}]
    assert ledger.experiment(exp_id).state == "completed"


def test_a_restart_resumes_from_the_latest_checkpoint(tmp_path: Path) -> None:
    calls: list[int] = []

    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        calls.append(trial_of(request))
        if len(calls) == 1:
            ckpt = str(request.run_dir.parents[1] / "checkpoints" / "4")
            return Outcome([{"kind": "checkpoint", "length": 4, "path": ckpt}], exit_code=137,
                           state=JobState.FAILED)
        return good(request, control)

    ledger, exp_id, _ = run(tmp_path, behave, max_trials=1)
    first, second = ledger.segments(exp_id, 1)
    assert (first.state, second.start_length) == ("failed", 4)
    assert ledger.trial(exp_id, 1).restarts == 1


def test_a_missing_metric_fails_that_trial_only(tmp_path: Path) -> None:
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        if trial_of(request) == 1:
            return Outcome([{"kind": "validation", "length": 10, "metrics": {"acc": 0.9}},
                            {"kind": "segment_end", "length": 10}])
        return good(request, control)

    ledger, exp_id, _ = run(tmp_path, behave, max_trials=3)
    states = [(t.id, t.state) for t in ledger.trials(exp_id)]
    assert states[0] == (1, "errored") and all(s == "completed" for _, s in states[1:])
    message = ledger.trial(exp_id, 1).message
    assert "searcher metric 'loss'" in message and "acc" in message
    assert ledger.experiment(exp_id).state == "completed"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "text"])
def test_a_non_finite_metric_fails_the_trial(tmp_path: Path, value: str) -> None:
    metric = {"NaN": float("nan"), "Infinity": float("inf"), "text": "0.5"}[value]

    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        if trial_of(request) == 1:
            return Outcome([{"kind": "validation", "length": 10, "metrics": {"loss": metric}},
                            {"kind": "segment_end", "length": 10}])
        return good(request, control)

    ledger, exp_id, _ = run(tmp_path, behave)
    assert ledger.trial(exp_id, 1).state == "errored"
    assert ledger.trial(exp_id, 2).state == "completed"


def test_preemption_resumes_and_is_not_a_restart(tmp_path: Path) -> None:
    fates = iter(["marker", "scheduler"])

    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        fate = next(fates, "good")
        ckpt = str(request.run_dir.parents[1] / "checkpoints" / "3")
        if fate == "marker":
            return Outcome([{"kind": "checkpoint", "length": 3, "path": ckpt},
                            {"kind": "segment_end", "length": 3}], exit_code=0,
                           preempted=True)
        if fate == "scheduler":
            return Outcome([], exit_code=None, state=JobState.PREEMPTED)
        return good(request, control)

    ledger, exp_id, _ = run(tmp_path, behave, max_trials=1, extra="max_restarts: 0")
    trial = ledger.trial(exp_id, 1)
    assert (trial.state, trial.restarts) == ("completed", 0)
    assert [s.state for s in ledger.segments(exp_id, 1)] == ["preempted", "preempted",
                                                              "completed"]
    assert [s.start_length for s in ledger.segments(exp_id, 1)] == [0, 3, 3]


def test_a_notice_after_the_target_is_reached_leaves_nothing_to_resume(tmp_path: Path) -> None:
    """The notice came as the trainer was finishing its rung: its segment is complete. It
    is not requeued, where it would only wait for the searcher's verdict on the rung."""
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        done = good(request, control, metric=float(trial_of(request)))
        return Outcome(done.lines, exit_code=0, preempted=trial_of(request) == 1)

    ledger, exp_id, scheduler = run(tmp_path, behave, spec=two_rung_asha(tmp_path, 4))
    assert ledger.experiment(exp_id).state == "completed"
    assert [(s.state, s.reason) for s in ledger.segments(exp_id, 1)] == [("completed", "")] * 2
    assert sum(name.startswith("cade-1-1-") for name in scheduler.submitted) == 2  # 4, then 8


def test_a_crash_after_the_target_is_checkpointed_is_not_a_restart(tmp_path: Path) -> None:
    """A rank aborting as the process group tears down fails the job after the chief reported
    and checkpointed its target: the training is durable, so it is not run again. Without
    the checkpoint, the rerun is what recovers it."""
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        lines = good(request, control, metric=3.0 - trial_of(request)).lines
        if trial_of(request) == 2:  # the better one: promoted, not stopped
            lines = [line for line in lines if line["kind"] != "checkpoint"]
        return Outcome(lines, exit_code=134, state=JobState.FAILED)

    ledger, exp_id, _ = run(tmp_path, behave,
                            spec=two_rung_asha(tmp_path, 2, extra="max_restarts: 0"))
    done, lost = ledger.trials(exp_id)
    reason = "exit code 134 after it reached and checkpointed its target 4"
    assert [(s.state, s.exit_code, s.reason) for s in ledger.segments(exp_id, 1)] == [
        ("completed", 134, reason)]
    assert (done.restarts, done.message) == (0, f"segment 1: {reason}")
    assert (lost.state, lost.restarts) == ("errored", 1)
    assert "exit code 134" in lost.message


def test_invalid_hyperparameters_are_reported_to_the_searcher(tmp_path: Path) -> None:
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        if trial_of(request) == 1:
            return Outcome([{"kind": "invalid_hp", "length": 0, "message": "x too big"}])
        return good(request, control)

    ledger, exp_id, _ = run(tmp_path, behave, max_trials=2)
    trial = ledger.trial(exp_id, 1)
    assert trial.state == "errored" and trial.message == "invalid hyperparameters: x too big"
    exits = [e.event for e in ledger.events(exp_id) if e.event["op"] == "exit"]
    assert exits == [{"op": "exit", "trial": 1, "reason": "invalid_hp"}]
    # random replaces an invalid trial without using up the budget: 2 good trials follow
    assert [t.state for t in ledger.trials(exp_id)] == ["errored", "completed", "completed"]


def test_a_job_that_never_starts_errors_its_trial(tmp_path: Path) -> None:
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        if trial_of(request) == 1:
            return Outcome(never_starts="PartitionNodeLimit")
        return good(request, control)

    ledger, exp_id, scheduler = run(tmp_path, behave)
    trial = ledger.trial(exp_id, 1)
    assert trial.state == "errored" and "PartitionNodeLimit" in trial.message
    assert "fake-1" in scheduler.canceled
    assert ledger.experiment(exp_id).state == "completed"


def test_reports_after_a_stop_are_ignored(tmp_path: Path) -> None:
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        outcome = good(request, control)
        outcome.lines.insert(1, {"kind": "validation", "length": 11,
                                 "metrics": {"loss": 0.01}})
        return outcome

    ledger, exp_id, _ = run(tmp_path, behave, max_trials=1)
    validations = [e for e in ledger.events(exp_id) if e.event["op"] == "validation"]
    assert [e.event["length"] for e in validations] == [10]


def failing(request: JobRequest, control: dict[str, Any]) -> Outcome:
    return Outcome([], exit_code=1, state=JobState.FAILED)


def test_every_trial_failing_errors_the_experiment(tmp_path: Path) -> None:
    ledger, exp_id, _ = run(tmp_path, failing, extra="max_restarts: 0")
    exp = ledger.experiment(exp_id)
    assert (exp.state, exp.message) == ("errored", "every trial errored")


def errored(ledger: Ledger, exp_id: int) -> int:
    return sum(t.state == "errored" for t in ledger.trials(exp_id))


def test_trials_failing_before_any_report_pause_the_search(tmp_path: Path) -> None:
    """At 3 errored trials, nothing reported: paused, so no more jobs queue up to fail the
    same way; resumed and failing on, it pauses again at 6 (then 12, 24, ...)."""
    ledger, exp_id, scheduler = run(tmp_path, failing, max_trials=20, extra="max_restarts: 0")
    exp = ledger.experiment(exp_id)
    assert (exp.state, errored(ledger, exp_id)) == ("paused", 3)
    assert exp.message.startswith("paused: 3 trials failed before any trial reported a metric "
                                  "(trial 3: segment 1 failed (exit code 1) after 0 restarts; see ")
    assert exp.message.endswith("; fix the entrypoint, then `cade resume 1` and drive it (`cade "
                                "watch 1`); the setting pause_after_failed_trials (3, 0 for "
                                "never) decides when this happens")
    submitted = len(scheduler.submitted)
    for _ in range(5):
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert len(scheduler.submitted) == submitted   # paused: nothing new starts
    assert engine.resume(ledger, exp_id).message == ""
    for _ in range(20):
        if engine.sync(ledger, exp_id, scheduler, SETTINGS).state != "active":
            break
    assert (ledger.experiment(exp_id).state, errored(ledger, exp_id)) == ("paused", 6)


def test_a_search_that_reported_once_is_not_paused_by_failures(tmp_path: Path) -> None:
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        return good(request, control) if trial_of(request) == 1 else failing(request, control)

    ledger, exp_id, _ = run(tmp_path, behave, max_trials=6, extra="max_restarts: 0", syncs=40)
    assert (ledger.experiment(exp_id).state, errored(ledger, exp_id)) == ("completed", 5)


def test_trials_rejecting_their_hyperparameters_are_not_failures(tmp_path: Path) -> None:
    """Determined's hp_constraints pattern: the first trials raise InvalidHP."""
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        if trial_of(request) <= 4:
            return Outcome([{"kind": "invalid_hp", "length": 0, "message": "too wide"}])
        return good(request, control)

    ledger, exp_id, _ = run(tmp_path, behave, max_trials=2, syncs=40)
    assert ledger.experiment(exp_id).state == "completed"
    assert [t.state for t in ledger.trials(exp_id)] == ["errored"] * 4 + ["completed"] * 2


def test_pause_after_failed_trials_0_never_pauses(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state" / "ledger.db")
    exp_id = engine.submit(ledger, make_spec(tmp_path, max_trials=6, extra="max_restarts: 0"), "local")
    scheduler = FakeScheduler(behave=failing)
    never = Settings(poll_interval=0, stop_grace=0, pause_after_failed_trials=0)
    for _ in range(40):
        if engine.sync(ledger, exp_id, scheduler, never).state not in ("pending", "active"):
            break
    exp = ledger.experiment(exp_id)
    assert (exp.state, exp.message, errored(ledger, exp_id)) == ("errored", "every trial errored", 6)


def test_a_malformed_line_fails_the_trial(tmp_path: Path) -> None:
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        if trial_of(request) == 1:
            return Outcome([["not", "an", "object"]])  # type: ignore[list-item]
        return good(request, control)

    ledger, exp_id, _ = run(tmp_path, behave)
    assert "malformed line" in ledger.trial(exp_id, 1).message
    assert ledger.trial(exp_id, 2).state == "completed"
