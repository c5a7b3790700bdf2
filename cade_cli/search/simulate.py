"""`cade simulate`: run a searcher against an objective function on a simulated clock.

Pure apart from calling the objective. A discrete-event simulation: `workers` slots, every
trial trains one unit of length per unit of time, reports at the lengths the searcher asks
for (or at every multiple of `validation_period`) and whenever its segment ends. Events at
the same time are handled in trial-creation order; trials waiting for a slot start first
come, first served. A trial whose report continues it (promotion, next PBT round) keeps its
slot; a Stop for a running trial takes effect at once. An exception raised by the objective
means the trial exits early (errored) at that length. With a `Memory` the objective is
path-dependent (search/history.py): it is called with the params of the simulated model
the trial holds, carried from a parent's checkpoint to its child and from segment to segment.
"""

from __future__ import annotations

import bisect
import heapq
import math
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cade_cli.errors import ObjectiveError, SpecError
from cade_cli.plugins import load
from cade_cli.search.history import Memory, ModelState
from cade_cli.search.searchers import Searcher, make_searcher, searcher_facts
from cade_cli.search.searchers.base import (
    Create,
    Decision,
    ExitReason,
    Shutdown,
    Stop,
    Train,
)
from cade_cli.spec.experiment import ExperimentSpec, handed_target

Objective = Callable[[dict[str, Any], int, int], float]
ProgressCallback = Callable[[float], None]
PROGRESS_EVERY = 256  # events between progress callbacks


@dataclass
class SimTrial:
    """One simulated trial; `validations` holds (length, raw metric) pairs."""

    trial: int
    params: dict[str, Any]
    bracket: int = 0
    parent: int | None = None
    start_length: int = 0
    length: int = 0
    validations: list[tuple[int, float]] = field(default_factory=list)
    state: str = "stopped"          # completed | stopped | errored (set when the run ends)
    message: str = ""               # why an errored trial failed (the objective's exception)


@dataclass(frozen=True)
class Best:
    trial: int
    metric: float
    length: int


@dataclass(frozen=True)
class SimulationResult:
    trials: tuple[SimTrial, ...]
    best: Best | None
    total_length: int
    makespan: int
    finished: bool   # the searcher ended the search (Shutdown); else it stalled (UNFINISHED)


@dataclass
class _Run:
    """Where a trial stands on the simulated clock."""

    record: SimTrial
    model: ModelState               # the simulated model's state (used with a memory) ...
    model_length: int               # ... after training to this length
    target: int = 0
    report_at: tuple[int, ...] = ()
    running: bool = False
    queued: bool = False
    closed: bool = False
    errored: bool = False
    segment_time: int = 0           # when the current segment (or its extension) began
    segment_length: int = 0         # the trial's length at that moment
    generation: int = 0             # invalidates scheduled events of an older segment


class Simulation:
    def __init__(self, searcher: Searcher, objective: Objective, *, workers: int | None,
                 validation_period: int | None, smaller_is_better: bool,
                 full_length: int, on_progress: ProgressCallback | None = None,
                 memory: Memory | None = None) -> None:
        self.searcher = searcher
        self.objective = objective
        self.memory = memory
        self.workers = workers or None          # 0 / None: as many as needed
        self.period = validation_period or None
        self.sign = 1.0 if smaller_is_better else -1.0
        self.full_length = full_length
        self.on_progress = on_progress
        self.runs: dict[int, _Run] = {}
        self.queue: deque[int] = deque()
        self.events: list[tuple[int, int, int, int]] = []   # (time, trial, generation, length)
        self.busy = 0
        self.now = 0
        self.shut_down = False

    def run(self) -> SimulationResult:
        self._apply(self.searcher.start())
        self._fill_slots()
        handled = 0
        while self.events and not self.shut_down:
            time, trial, generation, length = heapq.heappop(self.events)
            run = self.runs[trial]
            if generation != run.generation or not run.running:
                continue  # the segment was stopped or extended after this was scheduled
            self.now = time
            self._report(run, length)
            self._fill_slots()
            handled += 1
            if self.on_progress and handled % PROGRESS_EVERY == 0:
                self.on_progress(self.searcher.progress())
        return self._result()

    # -- the clock ------------------------------------------------------------------------
    def _position(self, run: _Run) -> int:
        if not run.running:
            return run.record.length
        return run.segment_length + (self.now - run.segment_time)

    def _next_point(self, run: _Run, position: int) -> int:
        if self.period:
            candidate = (position // self.period + 1) * self.period
        else:
            index = bisect.bisect_right(run.report_at, position)
            candidate = run.report_at[index] if index < len(run.report_at) else run.target
        return max(min(candidate, run.target), position)

    def _schedule(self, run: _Run, position: int) -> None:
        """(Re)start the clock of a running trial, now at `position`."""
        run.record.length = position
        run.segment_time, run.segment_length = self.now, position
        run.generation += 1
        point = self._next_point(run, position)
        event = (self.now + point - position, run.record.trial, run.generation, point)
        heapq.heappush(self.events, event)

    def _fill_slots(self) -> None:
        while self.queue and (self.workers is None or self.busy < self.workers):
            run = self.runs[self.queue.popleft()]
            if not run.queued:
                continue  # stopped while waiting
            run.queued, run.running = False, True
            self.busy += 1
            self._schedule(run, run.record.length)

    def _release(self, run: _Run) -> None:
        run.record.length = self._position(run)
        run.running = False
        run.generation += 1
        self.busy -= 1

    # -- events ---------------------------------------------------------------------------
    def _report(self, run: _Run, length: int) -> None:
        record = run.record
        record.length = length
        metric = self._evaluate(record, self._params_at(run, length), length)
        if metric is None:
            self._release(run)
            run.errored = run.closed = True
            self._apply(self.searcher.on_exit(record.trial, ExitReason.ERRORED))
            return
        record.validations.append((length, metric))
        segment_ended = length >= run.target
        if not segment_ended:
            self._schedule(run, length)
        self._apply(self.searcher.on_validation(record.trial, length, metric))
        if segment_ended and run.running and run.target <= length:
            self._release(run)  # not continued in place: the slot goes to the queue

    def _params_at(self, run: _Run, length: int) -> dict[str, Any]:
        """The params the objective sees at `length`: the trial's own, or with a memory
        its simulated model's (trained on to `length` with the trial's params)."""
        if self.memory is None:
            return run.record.params
        run.model = self.memory.trained(run.model, run.record.params, length - run.model_length)
        run.model_length = length
        return self.memory.effective(run.model)

    def _evaluate(self, record: SimTrial, params: dict[str, Any],
                  length: int) -> float | None:
        """The objective's metric, or None when the trial fails at this length."""
        try:
            value = self.objective(params, length, record.trial)
        except Exception as err:  # noqa: BLE001 - any failure of user code is the trial failing
            record.message = f"{type(err).__name__}: {err}"
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ObjectiveError(
                f"the objective returned {value!r} for trial {record.trial} at length "
                f"{length}; it must return a number",
                hint="FUNC(params, length, trial) -> float")
        if not math.isfinite(value):
            record.message = f"the objective returned {value!r}"
            return None
        return float(value)

    def _apply(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            if isinstance(decision, Create):
                self._create(decision)
            elif isinstance(decision, Train):
                self._train(decision)
            elif isinstance(decision, Stop):
                self._stop(decision.trial)
            elif isinstance(decision, Shutdown):
                self.shut_down = True

    def _create(self, decision: Create) -> None:
        start = 0
        model = ModelState.fresh(decision.params)
        if decision.parent is not None:
            parent = self.runs[decision.parent]
            start = self._position(parent)
            if self.memory is not None:
                self._params_at(parent, start)   # the checkpoint holds the model at `start`
                model = parent.model
        record = SimTrial(decision.trial, decision.params, decision.bracket, decision.parent,
                          start_length=start, length=start)
        self.runs[decision.trial] = _Run(record, model, start)

    def _train(self, decision: Train) -> None:
        run = self.runs[decision.trial]
        if run.closed:
            return
        run.target, run.report_at = decision.length, tuple(sorted(decision.report_at))
        if run.running:
            self._schedule(run, self._position(run))
        elif not run.queued:
            run.queued = True
            self.queue.append(decision.trial)

    def _stop(self, trial: int) -> None:
        run = self.runs[trial]
        if run.running:
            self._release(run)
        run.queued = False
        run.closed = True

    # -- the outcome ----------------------------------------------------------------------
    def _result(self) -> SimulationResult:
        best: tuple[float, int, int, float] | None = None
        total = 0
        for run in self.runs.values():
            if run.running:
                self._release(run)
            record = run.record
            total += record.length - record.start_length
            if run.errored:
                record.state = "errored"
            elif record.length >= self.full_length:
                record.state = "completed"
            else:
                record.state = "stopped"
            for length, metric in record.validations:
                key = (self.sign * metric, record.trial, length, metric)
                if best is None or key < best:
                    best = key
        trials = tuple(self.runs[t].record for t in sorted(self.runs))
        top = Best(best[1], best[3], best[2]) if best else None
        return SimulationResult(trials, top, total, self.now, self.shut_down)


def simulate(spec: ExperimentSpec, objective: Objective, *, workers: int | None = None,
             validation_period: int | None = None, seed: int = 0,
             on_progress: ProgressCallback | None = None,
             memory: float | None = None) -> SimulationResult:
    """Run the spec's search against `objective` with `workers` simulated slots.

    `workers` None means the spec's max_concurrent_trials (0 there: unlimited). `memory` L
    makes the objective path-dependent (search/history.py); None: the params alone count.
    """
    final_length = searcher_facts(spec.searcher).final_length
    if final_length is not None and handed_target(final_length) is None:
        raise SpecError("searcher.max_length is not given: each trial's own code decides how long "
                        "it trains, so there is no length to simulate",
                        hint="give searcher.max_length to simulate the search")
    searcher = make_searcher(spec.searcher, spec.hyperparameters, seed)
    slots = spec.searcher.max_concurrent_trials if workers is None else workers
    simulation = Simulation(searcher, objective, workers=slots,
                            validation_period=validation_period,
                            smaller_is_better=spec.searcher.smaller_is_better,
                            full_length=final_length or 0, on_progress=on_progress,
                            memory=Memory(spec.hyperparameters, memory) if memory else None)
    return simulation.run()


def load_objective(reference: str, search_dir: str | None = None) -> Objective:
    """Import `MODULE:FUNC`; MODULE is looked up in `search_dir` (default: the cwd) first."""
    module_name, _, function_name = reference.partition(":")
    if not module_name or not function_name:
        raise ObjectiveError(f"--objective {reference!r} is not MODULE:FUNC",
                             hint="e.g. --objective cade_cli.search.objectives:power_law")
    directory = os.path.abspath(search_dir or os.getcwd())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module = load(module_name)
    except ModuleNotFoundError as err:
        raise ObjectiveError(f"cannot import objective module {module_name!r}: {err}",
                             hint=f"MODULE is imported from {directory} or the installed "
                                  "packages") from err
    except Exception as err:
        raise ObjectiveError(f"importing objective module {module_name!r} failed: "
                             f"{type(err).__name__}: {err}") from err
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ObjectiveError(f"module {module_name!r} has no function {function_name!r}",
                             hint="FUNC(params, length, trial) -> float")
    objective: Objective = function
    return objective


def result_to_json(result: SimulationResult) -> dict[str, Any]:
    best = None
    if result.best is not None:
        best = {"trial": result.best.trial, "metric": result.best.metric,
                "length": result.best.length}
    return {
        "trials": [{"trial": t.trial, "params": t.params,
                    "validations": [[length, metric] for length, metric in t.validations],
                    "final_length": t.length, "state": t.state} for t in result.trials],
        "best": best,
        "total_length": result.total_length,
        "makespan": result.makespan,
        "finished": result.finished,
    }
