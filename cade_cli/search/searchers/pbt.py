"""Population-based training, as Determined 0.17 runs it (with its hangs fixed).

`population_size` random trials each train `length_per_round` and report. Once every
member has reported for the round: after `num_rounds` rounds every member is closed;
otherwise members are ranked (metric, then creation order), the worst
`int(truncate_fraction * population_size)` are closed, and each of the same number of best
members gets a child: explored params, started from the parent's latest checkpoint at the
parent's trained length. Everyone else trains another round.

A member that exits early stays in the population as the worst possible value until it is
truncated (as in Determined), so it is replaced by a child of a good member. Unlike
Determined, a round also ends when exited members leave fewer than `population_size`
members, and the search shuts down when no member can train any more. An initial member
that rejects its hyperparameters (invalid_hp) is replaced by a fresh random one; later,
an invalid_hp exit counts as an early exit.
"""

from __future__ import annotations

import math
import random
from typing import Any

from cade_cli.search.plan import Plan, pbt_plan
from cade_cli.search.searchers.base import (
    Create,
    Decision,
    ExitReason,
    SearcherFacts,
    Shutdown,
    Stop,
    Train,
)
from cade_cli.search.searchers.simple import (
    CountingSearcher,
    common_snapshot,
    require,
    restore_common,
)
from cade_cli.search.space import Space, explore, sample
from cade_cli.spec.searcher_config import PbtConfig

WORST = math.inf


class Pbt(CountingSearcher):
    name = "pbt"

    def __init__(self, searcher_spec: PbtConfig, space: Space, rng: random.Random) -> None:
        super().__init__(searcher_spec, space, rng)
        self.spec: PbtConfig = searcher_spec
        self.population_size = require(searcher_spec, "population_size")
        self.num_rounds = require(searcher_spec, "num_rounds")
        self.length_per_round = require(searcher_spec, "length_per_round")
        self.rounds_completed = 0
        self.population: list[int] = []         # members, in creation order
        self.params: dict[int, dict[str, Any]] = {}
        self.target: dict[int, int] = {}        # length each member trains to this round
        self.metrics: dict[int, float] = {}     # this round's minimised metric per member
        self.exited: set[int] = set()           # members that can train no more

    # -- the searcher contract --------------------------------------------------------
    def start(self) -> list[Decision]:
        decisions: list[Decision] = []
        for _ in range(self.population_size):
            decisions += self._create(sample(self.space, self.rng), None, 0)
            self.population.append(self.created)
        return decisions

    def on_validation(self, trial: int, length: int, metric: float) -> list[Decision]:
        if (trial not in self.population or trial in self.exited or trial in self.metrics
                or length < self.target[trial]):
            return []
        self.metrics[trial] = self._minimised(metric)
        return self._end_round_if_complete()

    def on_exit(self, trial: int, reason: ExitReason) -> list[Decision]:
        if trial not in self.population or trial in self.exited:
            return []
        if reason == ExitReason.INVALID_HP and self._is_initial_round_member(trial):
            self.population.remove(trial)
            decisions = self._create(sample(self.space, self.rng), None, 0)
            self.population.append(self.created)
            return decisions
        self.exited.add(trial)
        self.metrics[trial] = WORST
        return self._end_round_if_complete()

    def progress(self) -> float:
        if self.done:
            return 1.0
        reported = len(self.metrics) / max(len(self.population), 1)
        return min((self.rounds_completed + reported) / self.num_rounds, 1.0)

    def snapshot(self) -> dict[str, Any]:
        return {**common_snapshot(self),
                "rounds_completed": self.rounds_completed, "population": self.population,
                "params": {str(t): p for t, p in self.params.items()},
                "target": {str(t): n for t, n in self.target.items()},
                # JSON has no infinity: the worst value is stored as null.
                "metrics": {str(t): None if m == WORST else m for t, m in self.metrics.items()},
                "exited": sorted(self.exited)}

    @classmethod
    def restore(cls, searcher_spec: PbtConfig, space: Space,
                snapshot: dict[str, Any]) -> Pbt:
        searcher: Pbt = restore_common(cls, searcher_spec, space, snapshot)
        searcher.rounds_completed = snapshot["rounds_completed"]
        searcher.population = list(snapshot["population"])
        searcher.params = {int(t): p for t, p in snapshot["params"].items()}
        searcher.target = {int(t): n for t, n in snapshot["target"].items()}
        searcher.metrics = {int(t): WORST if m is None else m
                            for t, m in snapshot["metrics"].items()}
        searcher.exited = set(snapshot["exited"])
        return searcher

    # -- what the rest of cade asks of the searcher -----------------------------------------
    @classmethod
    def facts(cls, spec: PbtConfig) -> SearcherFacts:
        # Members continue in place from round to round; a round is decided only once the
        # whole population has reported.
        rounds, per_round = require(spec, "num_rounds"), require(spec, "length_per_round")
        return SearcherFacts(ladders=(tuple(per_round * k for k in range(1, rounds + 1)),),
                             final_length=rounds * per_round, continues_in_place=True,
                             decides_by_round=True)

    @classmethod
    def preview(cls, spec: PbtConfig, space: Space) -> Plan:
        return pbt_plan(spec, require(spec, "population_size"), require(spec, "num_rounds"),
                        require(spec, "length_per_round"))

    # -- rounds ---------------------------------------------------------------------------
    def _end_round_if_complete(self) -> list[Decision]:
        if self.done or any(t not in self.metrics for t in self.population):
            return []
        self.rounds_completed += 1
        if self.rounds_completed >= self.num_rounds:
            return self._finish()
        ranked = sorted(self.population, key=lambda t: (self.metrics[t], t))
        truncate = min(int(self.spec.truncate_fraction * self.population_size),
                       len(ranked) // 2)
        worst = ranked[len(ranked) - truncate:]
        survivors = ranked[:len(ranked) - truncate]
        decisions: list[Decision] = [Stop(t) for t in worst if t not in self.exited]
        self.population = sorted(survivors)
        for parent in ranked[:truncate]:
            if parent not in self.exited:
                decisions += self._create_child(parent)
                self.population.append(self.created)
        self.exited &= set(survivors)
        # Exited members stay, already reported as the worst, until they are truncated.
        self.metrics = {t: WORST for t in self.exited}
        decisions += self._continue(sorted(survivors))
        if all(t in self.exited for t in self.population):
            return decisions + self._finish()
        return decisions

    def _continue(self, members: list[int]) -> list[Decision]:
        decisions: list[Decision] = []
        for trial in members:
            if trial not in self.exited:
                self.target[trial] += self.length_per_round
                length = self.target[trial]
                decisions.append(Train(trial, length, report_at=(length,)))
        return decisions

    def _finish(self) -> list[Decision]:
        self.done = True
        stops: list[Decision] = [Stop(t) for t in self.population if t not in self.exited]
        self.population = []
        return [*stops, Shutdown()]

    # -- members --------------------------------------------------------------------------
    def _create_child(self, parent: int) -> list[Decision]:
        params = explore(self.space, self.params[parent], self.rng,
                         self.spec.resample_probability, self.spec.perturb_factor)
        return self._create(params, parent, self.target[parent])

    def _create(self, params: dict[str, Any], parent: int | None,
                start_length: int) -> list[Decision]:
        self.created += 1
        trial = self.created
        self.params[trial] = params
        length = start_length + self.length_per_round
        self.target[trial] = length
        return [Create(trial, params, parent=parent), Train(trial, length, report_at=(length,))]

    def _is_initial_round_member(self, trial: int) -> bool:
        return self.rounds_completed == 0 and trial not in self.metrics

    def _minimised(self, metric: float) -> float:
        if not math.isfinite(metric):
            return WORST
        return metric if self.spec.smaller_is_better else -metric
