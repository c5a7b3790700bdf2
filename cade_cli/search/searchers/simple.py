"""The searchers that train every trial to `max_length`: single, random and grid.

Determined's semantics: `min(max_concurrent_trials or max_trials, max_trials)` trials are
created at the start and one more each time a trial is closed, until the budget is used.
Each trial trains to `max_length` in one segment and is closed (Stop) once it reports at
that length. A trial that exits early is closed; an invalid-hyperparameter exit does not
use up the budget and is replaced (random, single). Grid never repeats a point: a point
whose hyperparameters were rejected is skipped.
"""

from __future__ import annotations

import random
from typing import Any, Self

from cade_cli.errors import SpecError
from cade_cli.search.samplers import load_sampler_state, make_sampler, sampler_state
from cade_cli.search.searchers.base import Create, Decision, ExitReason, Shutdown, Stop, Train
from cade_cli.search.searchers.brackets import minimised
from cade_cli.search.space import Space, grid
from cade_cli.spec.experiment import SearcherSpec

SNAPSHOT_FORMAT = 1


def rng_state_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def rng_from_json(state: list[Any]) -> random.Random:
    rng = random.Random()
    version, internal, gauss_next = state
    rng.setstate((version, tuple(internal), gauss_next))
    return rng


def require(spec: SearcherSpec, field_name: str) -> int:
    """A searcher field that the spec loader should already have checked."""
    value = getattr(spec, field_name)
    if value is None:
        raise SpecError(f"searcher.{field_name} is required for the {spec.name} searcher")
    if value < 1:
        raise SpecError(f"searcher.{field_name} must be at least 1, got {value}")
    return int(value)


def check_snapshot(snapshot: dict[str, Any], name: str) -> None:
    if snapshot.get("searcher") != name or snapshot.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"not a format-{SNAPSHOT_FORMAT} {name} searcher snapshot: "
                         f"{snapshot.get('searcher')!r} format {snapshot.get('format')!r}")


class _FixedLengthSearcher:
    """Shared machinery: trials trained to max_length, a budget of counted trials."""

    name = ""

    def __init__(self, searcher_spec: SearcherSpec, space: Space, rng: random.Random) -> None:
        self.spec = searcher_spec
        self.space = space
        self.rng = rng
        self.max_length = require(searcher_spec, "max_length")
        self.created = 0           # trial ids handed out so far (ids are 1..created)
        self.uncounted = 0         # invalid-hyperparameter trials: they use no budget
        self.closed_counted = 0    # trials done that use budget
        self.open: set[int] = set()
        self.done = False
        self.sampler = make_sampler(searcher_spec.sampler, space, (self.max_length,))

    # -- what subclasses choose -------------------------------------------------------
    @property
    def budget(self) -> int:
        raise NotImplementedError

    def _next_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _invalid_uses_budget(self) -> bool:
        return False

    # -- the searcher contract --------------------------------------------------------
    def start(self) -> list[Decision]:
        concurrency = self.spec.max_concurrent_trials or self.budget
        decisions: list[Decision] = []
        for _ in range(min(concurrency, self.budget)):
            decisions += self._create()
        return decisions + self._shutdown_if_finished()

    def on_validation(self, trial: int, length: int, metric: float) -> list[Decision]:
        if trial not in self.open or length < self.max_length:
            return []
        self.sampler.observe(trial, length, minimised(metric, self.spec.smaller_is_better))
        self._close(trial, counted=True)
        return [Stop(trial), *self._refill()]

    def on_exit(self, trial: int, reason: ExitReason) -> list[Decision]:
        if trial not in self.open:
            return []
        counted = reason != ExitReason.INVALID_HP or self._invalid_uses_budget()
        self.sampler.exited(trial, ExitReason(reason))
        self._close(trial, counted)
        return self._refill()

    def progress(self) -> float:
        if self.done:
            return 1.0
        return min(self.closed_counted / self.budget, 1.0)

    def snapshot(self) -> dict[str, Any]:
        return {"searcher": self.name, "format": SNAPSHOT_FORMAT, "created": self.created,
                "uncounted": self.uncounted, "closed_counted": self.closed_counted,
                "open": sorted(self.open), "done": self.done,
                "rng": rng_state_to_json(self.rng), **sampler_state(self.sampler)}

    @classmethod
    def restore(cls, searcher_spec: SearcherSpec, space: Space,
                snapshot: dict[str, Any]) -> Self:
        check_snapshot(snapshot, cls.name)
        searcher = cls(searcher_spec, space, rng_from_json(snapshot["rng"]))
        searcher.created = snapshot["created"]
        searcher.uncounted = snapshot["uncounted"]
        searcher.closed_counted = snapshot["closed_counted"]
        searcher.open = set(snapshot["open"])
        searcher.done = snapshot["done"]
        load_sampler_state(searcher.sampler, snapshot)
        return searcher

    # -- helpers ------------------------------------------------------------------------
    def _counted_created(self) -> int:
        return self.created - self.uncounted

    def _create(self) -> list[Decision]:
        self.created += 1
        trial = self.created
        self.open.add(trial)
        return [Create(trial, self._next_params()),
                Train(trial, self.max_length, report_at=(self.max_length,))]

    def _close(self, trial: int, counted: bool) -> None:
        self.open.discard(trial)
        if counted:
            self.closed_counted += 1
        else:
            self.uncounted += 1

    def _refill(self) -> list[Decision]:
        decisions: list[Decision] = []
        if self._counted_created() < self.budget:
            decisions += self._create()
        return decisions + self._shutdown_if_finished()

    def _shutdown_if_finished(self) -> list[Decision]:
        if self.done or self.open or self._counted_created() < self.budget:
            return []
        self.done = True
        return [Shutdown()]


class Random(_FixedLengthSearcher):
    """`max_trials` trials with params drawn at random."""

    name = "random"

    def __init__(self, searcher_spec: SearcherSpec, space: Space, rng: random.Random) -> None:
        super().__init__(searcher_spec, space, rng)
        self._budget = self._max_trials()

    def _max_trials(self) -> int:
        return require(self.spec, "max_trials")

    @property
    def budget(self) -> int:
        return self._budget

    def _next_params(self) -> dict[str, Any]:
        return self.sampler.propose(self.created, self.rng)


class Single(Random):
    """One trial (params drawn like random's, so const spaces give their values)."""

    name = "single"

    def _max_trials(self) -> int:
        return 1


class Grid(_FixedLengthSearcher):
    """One trial per grid point, in grid order."""

    name = "grid"

    def __init__(self, searcher_spec: SearcherSpec, space: Space, rng: random.Random) -> None:
        super().__init__(searcher_spec, space, rng)
        self.points = grid(space)

    @property
    def budget(self) -> int:
        return len(self.points)

    def _invalid_uses_budget(self) -> bool:
        return True  # the same point would be rejected again: move on

    def _next_params(self) -> dict[str, Any]:
        return self.points[self.created - 1]
