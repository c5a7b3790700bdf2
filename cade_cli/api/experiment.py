"""`Experiment`, a handle on one experiment of a ledger, and `submit` / `experiment(s)`.

A handle holds the ledger's path and the experiment's id only: each call opens the ledger,
does what the matching `cade` command does, and closes it, so a handle kept in a notebook
for days never holds a connection or a stale record.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cade_cli import engine
from cade_cli.backends import detect_scheduler, make_scheduler
from cade_cli.errors import MissingExtraError
from cade_cli.spec.experiment import ExperimentSpec, load_spec, spec_from_raw
from cade_cli.spec.settings import Settings, load_settings
from cade_cli.store.ledger import Ledger
from cade_cli.store.records import ExperimentRecord, TrialRecord
from cade_cli.views.export import tidy_rows

# Who drives a submitted experiment: a `cade watch` in the background (as `submit
# --detach`), a batch job (`--driver job`), or nobody yet (`wait()` drives it here).
Driver = Literal["background", "job", "none"]
Overrides = Mapping[str, Any] | Sequence[str]
# pause, resume, cancel: what they do once the driver lock is held.
Action = Callable[[Ledger, ExperimentRecord, Settings], ExperimentRecord]


def _settings(slots: int | None = None, scheduler: str | None = None) -> Settings:
    return load_settings().with_overrides(local_slots=slots, scheduler=scheduler)


def _override_strings(overrides: Overrides) -> tuple[str, ...]:
    """{"searcher.max_trials": 8} -> ("searcher.max_trials=8",); strings pass as they are.
    Values are written as JSON, which the override reader parses as YAML."""
    if isinstance(overrides, Mapping):
        return tuple(f"{key}={json.dumps(value)}" for key, value in overrides.items())
    if isinstance(overrides, str):  # one override, not a sequence of its characters
        return (overrides,)
    return tuple(overrides)


def _load(spec: str | Path | Mapping[str, Any], overrides: Overrides,
          workdir: str | Path | None) -> ExperimentSpec:
    strings = _override_strings(overrides)
    if isinstance(spec, Mapping):
        return spec_from_raw(dict(spec), "<dict>", str(Path(workdir or ".").absolute()), strings)
    return load_spec(spec, strings)


@dataclass(frozen=True)
class Experiment:
    """One experiment of the ledger at `ledger_path` (reads sync first, as `cade status`)."""

    id: int
    ledger_path: Path
    # Local backend slots for wait()'s driving (None: the settings); not part of its identity.
    slots: int | None = field(default=None, compare=False)

    @contextmanager
    def _ledger(self, sync: bool = False) -> Iterator[Ledger]:
        ledger = Ledger(self.ledger_path, create=False)
        try:
            if sync:
                problem = engine.refresh(ledger, _settings(self.slots), only=self.id)
                if problem:
                    warnings.warn(f"could not sync: {problem}", stacklevel=3)
            yield ledger
        finally:
            ledger.close()

    def record(self, sync: bool = True) -> ExperimentRecord:
        """The experiment's record: state, message, metric, ... (`cade status EXP`)."""
        with self._ledger(sync) as ledger:
            return ledger.experiment(self.id)

    @property
    def state(self) -> str:
        return self.record().state

    def trials(self, sync: bool = True) -> list[TrialRecord]:
        """Its trials with params, state, lengths and best/latest metric."""
        with self._ledger(sync) as ledger:
            return ledger.trials(self.id)

    def status(self, sync: bool = True) -> tuple[ExperimentRecord, list[TrialRecord]]:
        """The record and the trials, read together."""
        with self._ledger(sync) as ledger:
            return ledger.experiment(self.id), ledger.trials(self.id)

    def metrics(self, kind: str | None = None, sync: bool = True) -> list[dict[str, Any]]:
        """Every reported metric, one plain record per trial x kind x length x metric name
        (`cade export` rows: experiment, trial, kind, length, metric, value, time, segment);
        `kind` keeps only "validation" or "training" reports."""
        with self._ledger(sync) as ledger:
            ledger.experiment(self.id)   # NotFoundError for an unknown id
            rows = tidy_rows(ledger.iter_metrics(self.id, "trial_kind"))
            return [row for row in rows if kind is None or row["kind"] == kind]

    def metrics_frame(self, kind: str | None = None, sync: bool = True) -> Any:
        """`metrics()` as a pandas DataFrame (pandas is optional: MissingExtraError without)."""
        try:
            import pandas
        except ImportError:
            raise MissingExtraError("Experiment.metrics_frame", "pandas", "pandas") from None
        columns = ["experiment", "trial", "kind", "length", "metric", "value", "time", "segment"]
        return pandas.DataFrame(self.metrics(kind, sync), columns=columns)

    def best(self, sync: bool = True) -> engine.Best | None:
        """The best trial so far with its metric, length and checkpoint (`cade best`);
        None while no trial has validated."""
        with self._ledger(sync) as ledger:
            return engine.best(ledger, self.id)

    def wait(self, timeout: float | None = None) -> ExperimentRecord:
        """Drive the experiment until it has ended or is paused (`cade watch`); another driver running
        takes turns with this one. TimeoutError after `timeout` seconds (nothing canceled)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def sleep(seconds: float) -> None:
            if deadline is not None and time.monotonic() + seconds > deadline:
                raise TimeoutError(f"experiment {self.id} still runs after {timeout} s")
            time.sleep(seconds)
        with self._ledger() as ledger:
            return engine.drive_experiment(ledger, self.id, _settings(self.slots), sleep=sleep)

    def pause(self) -> ExperimentRecord:
        """Running trials checkpoint and exit; nothing new starts (`cade pause`)."""
        return self._act(lambda ledger, exp, settings: engine.pause(
            ledger, exp.id, _scheduler(ledger, exp, settings), settings))

    def resume(self) -> ExperimentRecord:
        """Paused trials go on from their checkpoints once a driver runs (`cade resume`)."""
        return self._act(lambda ledger, exp, settings: engine.resume(ledger, exp.id))

    def cancel(self) -> ExperimentRecord:
        """Cancel its jobs now and stop its trials (`cade cancel`)."""
        return self._act(lambda ledger, exp, settings: engine.cancel(
            ledger, exp.id, _scheduler(ledger, exp, settings), settings=settings))

    def _act(self, action: Action) -> ExperimentRecord:
        with self._ledger() as ledger:
            exp = ledger.experiment(self.id)
            settings = _settings(self.slots)
            return engine.with_lock(ledger, lambda: action(ledger, exp, settings))


def _scheduler(ledger: Ledger, exp: ExperimentRecord, settings: Settings) -> Any:
    return make_scheduler(exp.backend, ledger.state_dir, settings)


def submit(spec: str | Path | Mapping[str, Any], *, overrides: Overrides = (),
           scheduler: str | None = None, slots: int | None = None,
           ledger: str | Path | None = None, driver: Driver = "background",
           workdir: str | Path | None = None) -> Experiment:
    """Record the experiment in `spec` (a file, or a dict of spec keys whose trials run in
    `workdir`, default the current directory) and start driving it (`cade submit --detach`;
    `driver="job"`: `--driver job`; `"none"`: call `wait()` to drive it here)."""
    settings = _settings(slots, scheduler)
    loaded = _load(spec, overrides, workdir)
    backend = detect_scheduler() if settings.scheduler == "auto" else settings.scheduler
    engine.refuse_unrunnable(loaded, backend)   # refused before anything is recorded
    if driver == "job":
        engine.DriverJobOptions().check(backend)
    opened = Ledger(ledger, create=True)
    try:
        exp_id = engine.submit(opened, loaded, backend)
        root = Path(opened.experiment(exp_id).root)
        if driver == "background":
            engine.spawn_watch(exp_id, opened.path, root / "driver.log", slots)
        elif driver == "job":
            engine.submit_driver_job(opened.path, exp_id, settings,
                                     options=engine.DriverJobOptions())
        return Experiment(exp_id, opened.path, slots)
    finally:
        opened.close()


def experiment(ref: int | str | None = None, ledger: str | Path | None = None) -> Experiment:
    """The experiment with id or name `ref` (a name: the latest of that name; None: the
    latest experiment), as `cade status EXP` finds it."""
    opened = Ledger(ledger, create=False)
    try:
        return Experiment(opened.find_experiment(ref).id, opened.path)
    finally:
        opened.close()


def experiments(ledger: str | Path | None = None) -> list[Experiment]:
    """Every experiment of the ledger, oldest first."""
    opened = Ledger(ledger, create=False)
    try:
        return [Experiment(exp.id, opened.path) for exp in opened.experiments()]
    finally:
        opened.close()
