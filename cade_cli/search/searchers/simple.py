"""The searchers that train every trial to `max_length`: single, random and grid.

Determined's semantics: `min(max_concurrent_trials or max_trials, max_trials)` trials are
created at the start and one more each time a trial is closed, until the budget is used.
Each trial trains to `max_length` in one segment and is closed (Stop) once it reports at
that length. Without max_length (Determined 0.38) the trial's own code decides its length:
its target is OPEN_LENGTH, no report closes it, and it is done when its process exits 0
(`on_exit` with ExitReason.COMPLETED); its latest validation is its result. A trial that
exits early is closed; an invalid-hyperparameter exit does not use up the budget and is
replaced (random, single). Grid never repeats a point: a point whose hyperparameters were
rejected is skipped.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, TypeVar

from cade_cli.search.plan import Plan, fixed_length_plan
from cade_cli.search.samplers import load_sampler_state, make_sampler, sampler_state
from cade_cli.search.searchers.base import (
    Create,
    Decision,
    ExitReason,
    SearcherFacts,
    Shutdown,
    Stop,
    Train,
    check_snapshot,
    snapshot_header,
)
from cade_cli.search.searchers.brackets import minimised
from cade_cli.search.space import Space, grid_point, grid_size
from cade_cli.spec.experiment import OPEN_LENGTH
from cade_cli.spec.searcher_config import (
    FixedLengthConfig,
    SearcherConfig,
    required_count,
)


def rng_state_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def rng_from_json(state: list[Any]) -> random.Random:
    rng = random.Random()
    version, internal, gauss_next = state
    rng.setstate((version, tuple(internal), gauss_next))
    return rng


def common_snapshot(searcher: Any) -> dict[str, Any]:
    """The snapshot keys of a searcher that counts `created` trials from one `rng`."""
    return {**snapshot_header(searcher.name), "created": searcher.created, "done": searcher.done,
            "rng": rng_state_to_json(searcher.rng)}


def restore_common(cls: Any, searcher_spec: SearcherConfig, space: Space,
                   snapshot: dict[str, Any]) -> Any:
    """A `cls` searcher with the keys of `common_snapshot` restored."""
    check_snapshot(snapshot, cls.name)
    searcher = cls(searcher_spec, space, rng_from_json(snapshot["rng"]))
    searcher.created = snapshot["created"]
    searcher.done = snapshot["done"]
    return searcher


# A count the config must hold (checked when the config was built; again for configs built
# in code). The searcher modules import it from here.
require = required_count


def trial_length(spec: FixedLengthConfig) -> int:
    """max_length, or OPEN_LENGTH where it is not given: the trial decides."""
    return OPEN_LENGTH if spec.max_length is None else require(spec, "max_length")


# The class a classmethod is called on (typing.Self needs Python 3.11).
_FixedSearcher = TypeVar("_FixedSearcher", bound="_FixedLengthSearcher")


class CountingSearcher:
    """A searcher that hands out trial ids 1, 2, ... and draws from one rng (see
    `common_snapshot`): the fixed-length searchers and PBT."""

    name = ""

    def __init__(self, searcher_spec: SearcherConfig, space: Space, rng: random.Random) -> None:
        self.spec = searcher_spec
        self.space = space
        self.rng = rng
        self.created = 0           # trial ids handed out so far (ids are 1..created)
        self.done = False


class _FixedLengthSearcher(CountingSearcher):
    """Shared machinery: trials trained to max_length, a budget of counted trials."""

    def __init__(self, searcher_spec: FixedLengthConfig, space: Space, rng: random.Random) -> None:
        super().__init__(searcher_spec, space, rng)
        self.max_length = trial_length(searcher_spec)
        self.uncounted = 0         # invalid-hyperparameter trials: they use no budget
        self.closed_counted = 0    # trials done that use budget
        self.open: set[int] = set()
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
        if trial not in self.open:
            return []
        if self.max_length == OPEN_LENGTH:  # the latest result counts; the exit closes it
            self.sampler.observe(trial, OPEN_LENGTH, minimised(metric, self.spec.smaller_is_better))
            return []
        if length < self.max_length:
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
        return {**common_snapshot(self), "uncounted": self.uncounted,
                "closed_counted": self.closed_counted, "open": sorted(self.open),
                **sampler_state(self.sampler)}

    @classmethod
    def restore(cls: type[_FixedSearcher], searcher_spec: FixedLengthConfig, space: Space,
                snapshot: dict[str, Any]) -> _FixedSearcher:
        searcher: _FixedSearcher = restore_common(cls, searcher_spec, space, snapshot)
        searcher.uncounted = snapshot["uncounted"]
        searcher.closed_counted = snapshot["closed_counted"]
        searcher.open = set(snapshot["open"])
        load_sampler_state(searcher.sampler, snapshot)
        return searcher

    # -- what the rest of cade asks of the searcher ---------------------------------------
    walks_grid: ClassVar[bool] = False

    @classmethod
    def trial_budget(cls, spec: FixedLengthConfig) -> int | None:
        """The number of trials the spec fixes (None: the grid decides)."""
        return None

    @classmethod
    def facts(cls, spec: FixedLengthConfig) -> SearcherFacts:
        length = trial_length(spec)
        return SearcherFacts(ladders=((length,),), final_length=length, continues_in_place=False,
                             walks_grid=cls.walks_grid, max_trials=cls.trial_budget(spec))

    @classmethod
    def preview(cls, spec: FixedLengthConfig, space: Space) -> Plan:
        trials = grid_size(space) if cls.walks_grid else cls.trial_budget(spec) or 1
        return fixed_length_plan(spec, trial_length(spec), trials)

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

    def __init__(self, searcher_spec: FixedLengthConfig, space: Space, rng: random.Random) -> None:
        super().__init__(searcher_spec, space, rng)
        self._budget = self.trial_budget(searcher_spec) or 1

    @classmethod
    def trial_budget(cls, spec: FixedLengthConfig) -> int | None:
        return require(spec, "max_trials")   # a RandomConfig: random and single have one

    @property
    def budget(self) -> int:
        return self._budget

    def _next_params(self) -> dict[str, Any]:
        return self.sampler.propose(self.created, self.rng)


class Single(Random):
    """One trial (params drawn like random's, so const spaces give their values)."""

    name = "single"

    @classmethod
    def trial_budget(cls, spec: FixedLengthConfig) -> int | None:
        return 1


class Grid(_FixedLengthSearcher):
    """One trial per grid point, in grid order."""

    name = "grid"
    walks_grid = True

    def __init__(self, searcher_spec: FixedLengthConfig, space: Space, rng: random.Random) -> None:
        super().__init__(searcher_spec, space, rng)
        # Counted, never built: each trial's point is computed from its index.
        self.size = grid_size(space)

    @property
    def budget(self) -> int:
        return self.size

    def _invalid_uses_budget(self) -> bool:
        return True  # the same point would be rejected again: move on

    def _next_params(self) -> dict[str, Any]:
        return grid_point(self.space, self.created - 1)
