"""TPE: new trials proposed from a density model of the reported results (BOHB-style). Pure.

Results are kept per trial and per level (a rung length: a report counts for the highest
level at or below its length). The model is built on a level with at least
`min_observations` results: the longest such level, unless a shorter one says more about it
(count x squared rank correlation with the longest: many short results that rank as the
long ones do outweigh a few long ones; short results that rank otherwise count for little).
So brackets first learn from their short rungs and move up as longer results arrive, and
stay low only where the short rungs are measured to rank well (and, where the best trials'
optimum moved between a short rung and the longest, to rank those best trials well:
moved_optimum.py). Those results are split at the GAMMA quantile into good and bad; a
Parzen estimator of each (parzen.py) scores CANDIDATES points drawn from the good one, and
the point with the largest good/bad density ratio is proposed.

Until a level has enough results, and for a RANDOM_SHARE of proposals after that, params are
drawn at random: the model can be misled (low fidelities that rank badly), random draws keep
every region reachable. Trials created but not yet reported, and trials that errored
before reporting, join the bad group (constant liar with the worst value): a proposal made
while others are pending moves away from them instead of piling onto the same point.

Everything random comes from the RNG passed in; the state is plain data (`to_json`), so a
restored sampler makes the same proposals as the original for the same events.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cade_cli.search.moved_optimum import best_share_correlation, optimum_moved
from cade_cli.search.rank_correlation import rung_correlations
from cade_cli.search.samplers.encoding import Point, decode, dimensions, encode
from cade_cli.search.samplers.parzen import Parzen
from cade_cli.search.searchers.base import ExitReason
from cade_cli.search.space import Space, sample

STATE_FORMAT = 1
GAMMA = 0.15            # share of a level's results that form the good group
MAX_GOOD = 25           # cap of the good group (Optuna's)
MAX_BAD = 48            # bad results beyond this are thinned evenly by rank (cost bound)
MIN_OBSERVATIONS = 10   # results a level needs before the model is built on it
RANDOM_SHARE = 0.1      # proposals drawn at random even when a model exists
CANDIDATES = 16         # points drawn from the good density per proposal
MOVED_POWER = 16        # a level's weight where the optimum moved: best-share rho ** this


@dataclass
class TrialRecord:
    point: Point
    values: dict[int, float] = field(default_factory=dict)   # level -> minimised metric
    exited: bool = False
    errored: bool = False

    @property
    def pending(self) -> bool:
        return not self.values and not self.exited


class TpeSampler:
    name = "tpe"
    builds_model = True   # the learned bracket policy watches model_on_long_levels

    def __init__(self, space: Space, levels: tuple[int, ...]) -> None:
        self.space = space
        self.dims = dimensions(space)
        self.choices = [dim.choices for dim in self.dims]   # the moved-optimum fit's kinds
        self.levels = tuple(sorted(set(levels)))
        self.min_observations = max(MIN_OBSERVATIONS, len(self.dims) + 2)
        self.trials: dict[int, TrialRecord] = {}
        # The model rung depends on the results alone: chosen once per change of them (the
        # learned bracket policy asks for it too, right before each proposal).
        self._results_changed = 0
        self._chosen_level: tuple[int, int | None] = (-1, None)

    # -- events ---------------------------------------------------------------------------
    def propose(self, trial: int, rng: random.Random) -> dict[str, Any]:
        """Params for a new trial `trial`; it counts as pending until it reports or exits."""
        params = self._model_params(rng)
        if params is None:
            params = sample(self.space, rng)
        self.trials[trial] = TrialRecord(encode(self.dims, params))
        return params

    def observe(self, trial: int, length: float, value: float) -> None:
        """A minimised result of `trial` at `length` (the latest one per level counts)."""
        position = bisect.bisect_right(self.levels, length)
        record = self.trials.get(trial)
        if record is not None and position > 0:
            record.values[self.levels[position - 1]] = value
            self._results_changed += 1

    def exited(self, trial: int, reason: ExitReason) -> None:
        record = self.trials.get(trial)
        if record is None:
            return
        if reason == ExitReason.INVALID_HP:
            del self.trials[trial]  # never counts, like in the searchers
            self._results_changed += 1
            return
        record.exited = True
        record.errored = reason == ExitReason.ERRORED

    # -- the model ------------------------------------------------------------------------
    def model_level(self) -> int | None:
        """The level the model is built on (`_choose_model_level`), None before any level
        has enough results."""
        if self._chosen_level[0] != self._results_changed:
            self._chosen_level = (self._results_changed, self._choose_model_level())
        return self._chosen_level[1]

    def _choose_model_level(self) -> int | None:
        """The level whose results say most about the longest one: among the levels with
        enough results, the one with the largest count x squared rank correlation (its
        share of the ranking explained) with the longest level holding MIN_PAIRS+ results,
        as rung_correlations measures it. The longest level with enough results counts
        fully, a level that ranks in reverse not at all; ties go to the longer level.

        Where the best trials' optimum has moved between a level and the longest
        (moved_optimum.py), what counts is how well the level ranks those best trials,
        to the MOVED_POWER: only a level that ranks them almost as the longest does stays
        the model, since its good group is where the new trials go."""
        counts = Counter(level for record in self.trials.values() for level in record.values)
        enough = [level for level in self.levels if counts[level] >= self.min_observations]
        if len(enough) < 2:
            return enough[-1] if enough else None
        longest = enough[-1]
        seen = self._results_by_level()
        correlations = rung_correlations(seen)
        points = {trial: record.point for trial, record in self.trials.items()}

        def informative(level: int) -> float:
            if level == longest:
                return counts[level]
            if optimum_moved(seen, level, points, self.choices):
                rho = best_share_correlation(seen, level) or 0.0
                return counts[level] * max(0.0, rho) ** MOVED_POWER
            return counts[level] * max(0.0, correlations.get(level, 0.0)) ** 2

        return max(reversed(enough), key=informative)

    def model_on_long_levels(self) -> bool:
        """Whether the model is built on one of the two longest levels: the short ones
        were found to mislead near the best trials (the learned bracket policy's cue)."""
        level = self.model_level()
        return level is not None and level in self.levels[-2:]

    def _results_by_level(self) -> dict[int, dict[int, float]]:
        """level -> {trial: value}, in trial order (the correlations sum in a fixed order)."""
        results: dict[int, dict[int, float]] = {level: {} for level in self.levels}
        for trial in sorted(self.trials):
            for level, value in self.trials[trial].values.items():
                results[level][trial] = value
        return results

    def _model_params(self, rng: random.Random) -> dict[str, Any] | None:
        if not self.dims:
            return None
        level = self.model_level()
        # One draw per proposal, model or not: the random share is decided the same way
        # from the first proposal on.
        if rng.random() < RANDOM_SHARE or level is None:
            return None
        good, bad = self._split(level)
        good_density, bad_density = Parzen(self.dims, good), Parzen(self.dims, bad)
        best: Point | None = None
        best_score = -math.inf
        for _ in range(CANDIDATES):
            candidate = good_density.sample(rng)
            score = good_density.log_density(candidate) - bad_density.log_density(candidate)
            if score > best_score:
                best, best_score = candidate, score
        assert best is not None
        return decode(self.space, best)

    def _split(self, level: int) -> tuple[list[Point], list[Point]]:
        """Good and bad points at `level`.

        Good: the best GAMMA of the results at `level`. Bad: the rest of them, then the
        trials that stopped short of `level` (in a bracket, those ranked lower on the way
        up), then pending and errored trials (the constant liar).
        """
        ranked: list[tuple[float, int]] = []
        short: list[tuple[int, float, int]] = []   # (-highest level, value there, trial)
        lied: list[Point] = []
        for trial, record in self.trials.items():
            values = record.values
            if level in values:
                ranked.append((values[level], trial))
            elif values:
                highest = max(values)
                short.append((-highest, values[highest], trial))
            elif record.pending or record.errored:
                lied.append(record.point)
        ranked.sort()
        short.sort()
        n_good = max(1, min(math.ceil(GAMMA * len(ranked)), MAX_GOOD))
        bad_trials = [trial for _, trial in ranked[n_good:]] + [trial for *_, trial in short]
        good = [self.trials[trial].point for _, trial in ranked[:n_good]]
        bad = [self.trials[trial].point for trial in _thin(bad_trials, MAX_BAD)]
        return good, bad + lied

    # -- state ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"sampler": self.name, "format": STATE_FORMAT,
                "trials": [[trial, record.point, sorted(record.values.items()),
                            record.exited, record.errored]
                           for trial, record in sorted(self.trials.items())]}

    def load_json(self, state: dict[str, Any]) -> None:
        if state.get("sampler") != self.name or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a format-{STATE_FORMAT} tpe sampler state: "
                             f"{state.get('sampler')!r} format {state.get('format')!r}")
        self.trials = {int(trial): TrialRecord(list(point),
                                               {int(lv): float(v) for lv, v in values},
                                               bool(exited), bool(errored))
                       for trial, point, values, exited, errored in state["trials"]}
        self._chosen_level = (-1, None)


def describe() -> str:
    """The sampler in one line, with the constants it runs with."""
    return (f"tpe: new trials' params are proposed from a density model of the results "
            f"(best {GAMMA:.0%} against the rest, on the rung with {MIN_OBSERVATIONS}+ "
            f"results that says most about the longest such rung: its count x its squared "
            f"rank correlation with it, or, where the best trials' optimum has moved between "
            f"the two, x its rank correlation over those best trials to the "
            f"{MOVED_POWER}th power); random until then and for {RANDOM_SHARE:.0%} "
            f"of proposals; trials still running count as bad results")


def _thin(ranked: list[int], limit: int) -> list[int]:
    """At most `limit` entries spread evenly over the ranking (its shape survives)."""
    if len(ranked) <= limit:
        return ranked
    step = len(ranked) / limit
    return [ranked[int(i * step)] for i in range(limit)]
