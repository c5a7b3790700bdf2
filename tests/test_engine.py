"""Engine unit tests: a fake scheduler and a fake searcher, everything in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_fakes import FakeScheduler, Outcome, install_fake_searcher, make_spec

from cade_cli.backends.base import JobRequest, JobState
from cade_cli.engine import lifecycle as engine
from cade_cli.errors import CadeError
from cade_cli.jobs import render
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger

SETTINGS = Settings(poll_interval=0, stop_grace=30, max_queued_jobs=8)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "state" / "ledger.db")


def short(names: list[str]) -> list[str]:
    """Job names without the token of the experiment's directory (`cade-1-2-1-3f9a0c`)."""
    return [name.rsplit("-", 1)[0] for name in names]


def submit(tmp_path: Path, ledger: Ledger, **kwargs: object) -> int:
    return engine.submit(ledger, make_spec(tmp_path, **kwargs), "local")


def test_submit_records_the_experiment_and_the_start_event(tmp_path: Path, ledger: Ledger,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch, count=2)
    exp_id = submit(tmp_path, ledger)
    exp = ledger.experiment(exp_id)
    assert (exp.state, exp.seed, exp.searcher, exp.backend) == ("pending", 5, "random", "local")
    assert Path(exp.root) == (tmp_path / "state" / "experiments" / "1")
    [start] = ledger.events(exp_id)
    assert start.event == {"op": "start"} and not start.applied
    assert [d["op"] for d in start.decisions] == ["create", "train"]
    assert ledger.trials(exp_id) == []  # nothing acted on before the first sync


def test_a_seed_is_chosen_and_recorded_when_the_spec_has_none(tmp_path: Path, ledger: Ledger,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch)
    seeds = set()
    for _ in range(3):
        spec = make_spec(tmp_path)
        from dataclasses import replace
        exp_id = engine.submit(ledger, replace(spec, experiment_seed=None), "local")
        seeds.add(ledger.experiment(exp_id).seed)
    assert len(seeds) == 3


def test_sync_runs_trials_one_after_another_to_completion(tmp_path: Path, ledger: Ledger,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch, count=3, length=10)
    exp_id = submit(tmp_path, ledger)
    scheduler = FakeScheduler()
    for _ in range(10):
        exp = engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert exp.state == "completed" and exp.searcher_done
    assert short(scheduler.submitted) == ["cade-1-1-1", "cade-1-2-1", "cade-1-3-1"]
    token = render.job_name(1, 1, 1, ledger.experiment(exp_id).root).rsplit("-", 1)[1]
    assert {name.rsplit("-", 1)[1] for name in scheduler.submitted} == {token}
    trials = ledger.trials(exp_id)
    assert [(t.id, t.state, t.length, t.best_metric) for t in trials] == [
        (1, "completed", 10, 0.1), (2, "completed", 10, 0.1), (3, "completed", 10, 0.1)]
    assert trials[0].best_checkpoint and trials[0].best_checkpoint.endswith("checkpoints/10")
    events = ledger.events(exp_id)
    assert [e.event["op"] for e in events] == ["start", "validation", "validation", "validation"]
    assert all(e.applied for e in events)
    assert [d["op"] for d in events[-1].decisions] == ["stop", "shutdown"]
    assert len(ledger.metrics(exp_id, kind="validation")) == 3


def test_sync_is_idempotent(tmp_path: Path, ledger: Ledger,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch, count=2)
    exp_id = submit(tmp_path, ledger)
    scheduler = FakeScheduler()
    for _ in range(6):
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
    before = (ledger.events(exp_id), ledger.trials(exp_id), ledger.segments(exp_id))
    for _ in range(3):
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert (ledger.events(exp_id), ledger.trials(exp_id), ledger.segments(exp_id)) == before
    assert len(scheduler.submitted) == 2


def test_a_crash_after_submit_is_reconciled_by_job_name(tmp_path: Path, ledger: Ledger,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch, count=1)
    exp_id = submit(tmp_path, ledger)
    scheduler = FakeScheduler(run_now=False)
    scheduler.fail_after_submit = True
    with pytest.raises(RuntimeError):
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
    [seg] = ledger.segments(exp_id)
    assert (seg.state, seg.job_id) == ("intent", None)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    [seg] = ledger.segments(exp_id)
    assert (seg.state, seg.job_id) == ("running", "fake-1")
    assert short(scheduler.submitted) == ["cade-1-1-1"]  # adopted, not submitted again


def test_a_crash_before_submit_submits_once(tmp_path: Path, ledger: Ledger,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch, count=1)
    exp_id = submit(tmp_path, ledger)
    scheduler = FakeScheduler(run_now=False)
    real_submit = scheduler.submit
    monkeypatch.setattr(scheduler, "submit", lambda request: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
    monkeypatch.setattr(scheduler, "submit", real_submit)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert short(scheduler.submitted) == ["cade-1-1-1"]
    assert ledger.segments(exp_id)[0].job_id == "fake-1"


def test_a_torn_last_line_waits_until_it_is_complete(tmp_path: Path, ledger: Ledger,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch, count=1)
    exp_id = submit(tmp_path, ledger)
    scheduler = FakeScheduler(run_now=False)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    [seg] = ledger.segments(exp_id)
    metrics = Path(seg.run_dir) / "metrics.jsonl"
    full = json.dumps({"kind": "validation", "length": 10, "metrics": {"loss": 0.5}}) + "\n"
    metrics.write_text(full[:20])
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert ledger.segments(exp_id)[0].offset == 0
    assert len(ledger.events(exp_id)) == 1
    metrics.write_text(full)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert ledger.segments(exp_id)[0].offset == len(full)
    assert ledger.events(exp_id)[1].event == {"op": "validation", "trial": 1, "length": 10,
                                               "metric": 0.5}


def test_stop_reaches_the_job_then_cancels_after_the_grace(tmp_path: Path, ledger: Ledger,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch, count=1)
    exp_id = submit(tmp_path, ledger)
    scheduler = FakeScheduler(run_now=False)
    now = [1000.0]
    engine.sync(ledger, exp_id, scheduler, SETTINGS, clock=lambda: now[0])
    [seg] = ledger.segments(exp_id)
    with open(Path(seg.run_dir) / "metrics.jsonl", "w") as handle:
        handle.write(json.dumps({"kind": "validation", "length": 10,
                                 "metrics": {"loss": 0.5}}) + "\n")
    engine.sync(ledger, exp_id, scheduler, SETTINGS, clock=lambda: now[0])
    control = json.loads((Path(seg.run_dir) / "control.json").read_text())
    assert control["stop"] is True and control["reason"] == "searcher"
    assert scheduler.canceled == []
    now[0] += 31
    engine.sync(ledger, exp_id, scheduler, SETTINGS, clock=lambda: now[0])
    assert scheduler.canceled == ["fake-1"]
    exp = engine.sync(ledger, exp_id, scheduler, SETTINGS, clock=lambda: now[0])
    assert exp.state == "completed"
    assert ledger.segments(exp_id)[0].state == "canceled"


def test_a_promoted_live_segment_gets_its_target_raised(tmp_path: Path, ledger: Ledger,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch, count=1)
    exp_id = submit(tmp_path, ledger)
    scheduler = FakeScheduler(run_now=False)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    with ledger.transaction():
        ledger.update_trial(exp_id, 1, target_length=40)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    [seg] = ledger.segments(exp_id)
    assert json.loads((Path(seg.run_dir) / "control.json").read_text())["target_length"] == 40
    assert seg.target_length == 40 and len(scheduler.submitted) == 1


def wide_experiment(tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
                    concurrency: int) -> int:
    """A searcher that starts five trials at once, against a spec allowing `concurrency`."""
    from engine_fakes import FakeSearcher

    import cade_cli.engine.lifecycle as eng
    from cade_cli.search.searchers.base import Create, Train

    class Wide(FakeSearcher):
        def start(self):  # type: ignore[no-untyped-def]
            self.created = 5
            return [d for i in range(1, 6) for d in (Create(i, {}), Train(i, 10, (10,)))]

    monkeypatch.setattr(eng, "make_searcher", lambda spec, space, seed: Wide(5, 10))
    monkeypatch.setattr(eng, "restore_searcher", lambda spec, space, snap: Wide(**snap))
    return submit(tmp_path, ledger, concurrency=concurrency)


def test_the_queued_jobs_cap_holds_back_submissions(tmp_path: Path, ledger: Ledger,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    exp_id = wide_experiment(tmp_path, ledger, monkeypatch, concurrency=5)
    scheduler = FakeScheduler(run_now=False)
    engine.sync(ledger, exp_id, scheduler, Settings(poll_interval=0, max_queued_jobs=2))
    assert short(scheduler.submitted) == ["cade-1-1-1", "cade-1-2-1"]


def test_live_jobs_never_exceed_max_concurrent_trials(tmp_path: Path, ledger: Ledger,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials waiting at a rung may still hold a job: the cap counts jobs, not trials."""
    exp_id = wide_experiment(tmp_path, ledger, monkeypatch, concurrency=3)
    scheduler = FakeScheduler(run_now=False)
    for _ in range(2):
        engine.sync(ledger, exp_id, scheduler, Settings(poll_interval=0, max_queued_jobs=8))
    assert short(scheduler.submitted) == ["cade-1-1-1", "cade-1-2-1", "cade-1-3-1"]


def test_pause_resume_and_cancel(tmp_path: Path, ledger: Ledger,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch, count=1)
    exp_id = submit(tmp_path, ledger)
    scheduler = FakeScheduler(run_now=False)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    job = scheduler.jobs["fake-1"][0]
    scheduler.jobs["fake-1"] = (job, None)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)  # running now
    assert engine.pause(ledger, exp_id, scheduler, SETTINGS).state == "paused"
    assert json.loads((job.run_dir / "control.json").read_text())["reason"] == "pause"
    scheduler.behave = lambda request, control: Outcome(
        [{"kind": "checkpoint", "length": 4, "path": "/ck/4"},
         {"kind": "segment_end", "length": 4}])
    scheduler.run("fake-1")
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert ledger.trial(exp_id, 1).state == "paused"
    assert len(scheduler.submitted) == 1  # nothing launches while paused
    with pytest.raises(CadeError):
        engine.pause(ledger, exp_id, scheduler, SETTINGS)  # already paused
    engine.resume(ledger, exp_id)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    [_, seg2] = ledger.segments(exp_id)
    assert (seg2.index, seg2.start_length) == (2, 4)
    assert engine.cancel(ledger, exp_id, scheduler).state == "canceled"
    assert ledger.trial(exp_id, 1).state == "stopped"
    assert "fake-2" in scheduler.canceled


def test_best_respects_the_direction(tmp_path: Path, ledger: Ledger,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch, count=3)
    exp_id = submit(tmp_path, ledger)
    scheduler = FakeScheduler(
        behave=lambda r, c: Outcome([{"kind": "validation", "length": 10,
                                      "metrics": {"loss": {"1": 0.3, "2": 0.1, "3": 0.2}[
                                          r.name.split("-")[2]]}},
                                     {"kind": "segment_end", "length": 10}]))
    for _ in range(6):
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
    found = engine.best(ledger, exp_id)
    assert found is not None and (found.trial.id, found.metric, found.length) == (2, 0.1, 10)


def test_segment_outcome_states_are_recorded(tmp_path: Path, ledger: Ledger,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_searcher(monkeypatch, count=1)
    exp_id = submit(tmp_path, ledger)
    outcomes = iter([Outcome([], exit_code=None, state=JobState.TIMEOUT), None])
    def behave(request, control):  # type: ignore[no-untyped-def]
        return next(outcomes) or Outcome([{"kind": "validation", "length": 10,
                                           "metrics": {"loss": 1.0}},
                                          {"kind": "segment_end", "length": 10}])
    scheduler = FakeScheduler(behave=behave)
    for _ in range(4):
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert [s.state for s in ledger.segments(exp_id)] == ["timeout", "completed"]
    assert ledger.trial(exp_id, 1).restarts == 0


def _validate_and_wait(request: JobRequest, control: dict[str, object]) -> Outcome:
    """A job that validates and checkpoints at its target, then waits there for the driver."""
    trial = int(request.name.split("-")[2])       # loss grows with the trial id
    target = int(str(control["target_length"]))
    ckpt = str(request.run_dir.parents[1] / "checkpoints" / str(target))
    return Outcome([{"kind": "validation", "length": target, "time": 1.0,
                     "metrics": {"loss": float(trial)}},
                    {"kind": "checkpoint", "length": target, "time": 1.0, "path": ckpt}],
                   exit_code=None, state=JobState.RUNNING)


def test_unpromoted_trials_end_at_once_and_promoted_ones_train_on(tmp_path: Path,
                                                                  ledger: Ledger) -> None:
    """Promotion-type ASHA: a job waiting at its rung learns its fate from control.json."""
    from engine_fakes import spec_text

    from cade_cli.spec.experiment import parse_spec

    text = spec_text(tmp_path, searcher="async_halving", max_trials=16, max_length=8,
                     concurrency=4).replace(
        "  max_concurrent_trials", "  num_rungs: 2\n  divisor: 2\n  stop_once: false\n"
                                   "  max_concurrent_trials")
    exp_id = engine.submit(ledger, parse_spec(text, source="spec.yaml"), "local")
    scheduler = FakeScheduler(_validate_and_wait)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    controls = {seg.trial: json.loads((Path(seg.run_dir) / "control.json").read_text())
                for seg in ledger.segments(exp_id)}
    assert {t: (c["stop"], c["target_length"]) for t, c in controls.items()} == {
        1: (False, 8), 2: (False, 8), 3: (True, 4), 4: (True, 4)}
    assert controls[3]["reason"] == "not promoted (yet)"
    assert not ledger.trial(exp_id, 3).closed          # it may still be promoted later
    # New trials wait for a slot: the four waiting jobs still hold theirs.
    assert len(ledger.trials(exp_id)) > 4 and len(scheduler.submitted) == 4


PBT_SPEC = """
name: pbt-unit
entrypoint: python train.py
hyperparameters:
  x: {type: double, minval: 0, maxval: 1}
searcher:
  name: pbt
  metric: loss
  population_size: 4
  num_rounds: 3
  length_per_round: 5
  replace_function: {truncate_fraction: 0.25}
  explore_function: {resample_probability: 0.2, perturb_factor: 0.2}
  max_concurrent_trials: %d
resources: {launcher: none}
reproducibility: {experiment_seed: 5}
"""


@pytest.mark.parametrize("concurrency", [2, 4])
def test_pbt_members_wait_at_the_round_end_only_when_the_whole_population_runs(
        tmp_path: Path, ledger: Ledger, concurrency: int) -> None:
    from cade_cli.spec.experiment import parse_spec

    spec = parse_spec(PBT_SPEC % concurrency, source="spec.yaml")
    exp_id = engine.submit(ledger, spec, "local")
    scheduler = FakeScheduler(_validate_and_wait)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    controls = {seg.trial: json.loads((Path(seg.run_dir) / "control.json").read_text())
                for seg in ledger.segments(exp_id)}
    assert len(scheduler.submitted) == concurrency
    if concurrency == 4:
        # All four reported round 1 together: the round is decided at once, the survivors
        # train on in place, the worst one stops and trial 1's child replaces it.
        assert {t: (c["stop"], c["reason"], c["target_length"])
                for t, c in controls.items()} == {
            1: (False, "", 10), 2: (False, "", 10), 3: (False, "", 10),
            4: (True, "searcher", 5)}
        assert ledger.trial(exp_id, 5).parent == 1
    else:
        # Trials 3 and 4 have not started round 1: 1 and 2 give their slots back at once.
        assert {t: (c["stop"], c["reason"]) for t, c in controls.items()} == {
            1: (True, "the round is decided later"), 2: (True, "the round is decided later")}
        assert not ledger.trial(exp_id, 1).closed


def test_the_driver_wakes_as_soon_as_a_live_job_reports_or_ends(tmp_path: Path,
                                                                 ledger: Ledger) -> None:
    from cade_cli.engine.drive import REACT_SECONDS, activity, wait_for_activity

    exp_id = submit(tmp_path, ledger)
    slept: list[float] = []
    wait_for_activity(ledger, exp_id, 3.0, slept.append)    # no job yet: the whole interval
    assert sum(slept) == pytest.approx(3.0) and max(slept) == REACT_SECONDS
    scheduler = FakeScheduler(run_now=False)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    [seg] = ledger.live_segments(exp_id)
    assert activity(ledger, exp_id) == {seg.run_dir: (-1, False)}
    slept.clear()
    metrics = Path(seg.run_dir) / "metrics.jsonl"

    def sleep(seconds: float) -> None:   # training reports, then a validation at step 4
        slept.append(seconds)
        with open(metrics, "a") as handle:
            kind = "validation" if len(slept) == 4 else "training"
            handle.write(json.dumps({"kind": kind, "length": len(slept)}) + "\n")
    wait_for_activity(ledger, exp_id, 30.0, sleep)
    assert slept == [REACT_SECONDS] * 4
    slept.clear()

    def ends(seconds: float) -> None:
        slept.append(seconds)
        (Path(seg.run_dir) / "exit_code").write_text("0\n")
    wait_for_activity(ledger, exp_id, 30.0, ends)
    assert slept == [REACT_SECONDS]


def test_the_ledger_records_the_rung_each_trial_reached(tmp_path: Path, ledger: Ledger) -> None:
    from engine_fakes import spec_text

    from cade_cli.spec.experiment import parse_spec

    text = spec_text(tmp_path, searcher="async_halving", max_trials=4, max_length=8,
                     concurrency=4).replace(
        "  max_concurrent_trials", "  num_rungs: 2\n  divisor: 2\n  stop_once: false\n"
                                   "  max_concurrent_trials")
    exp_id = engine.submit(ledger, parse_spec(text, source="spec.yaml"), "local")
    scheduler = FakeScheduler()
    for _ in range(10):
        if engine.sync(ledger, exp_id, scheduler, SETTINGS).state == "completed":
            break
    trials = ledger.trials(exp_id)
    assert {t.length for t in trials} == {4, 8}
    assert all(t.rung == (1 if t.length == 8 else 0) for t in trials)


def test_a_job_that_started_is_stopped_gently_even_if_the_scheduler_says_pending(
        tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler's answer can be a poll old: the job's `started` marker wins."""
    from cade_cli.backends.base import JobStatus

    class StalePoll(FakeScheduler):
        def poll(self, job_ids):  # type: ignore[no-untyped-def]
            return {job_id: JobStatus(job_id, JobState.PENDING) for job_id in job_ids}

    install_fake_searcher(monkeypatch, count=1)
    exp_id = submit(tmp_path, ledger)
    scheduler = StalePoll(run_now=False)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    [seg] = ledger.segments(exp_id)
    run_dir = Path(seg.run_dir)
    (run_dir / "started").write_text("1795739123 node07 4242\n")
    (run_dir / "metrics.jsonl").write_text(json.dumps(
        {"kind": "validation", "length": 10, "time": 1.0, "metrics": {"loss": 0.5}}) + "\n")
    assert engine.sync(ledger, exp_id, scheduler, SETTINGS).state == "active"
    [seg] = ledger.segments(exp_id)
    assert (seg.state, seg.nodes, scheduler.canceled) == ("running", "node07", [])
    assert json.loads((run_dir / "control.json").read_text())["stop"] is True
