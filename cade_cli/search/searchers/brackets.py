"""ASHA brackets: one rung ladder each, of the stopping or the promotion type. Pure.

A bracket decides for the trials it created; `BracketSearch` (asha.py) routes events to the
brackets of one searcher, which share trial ids and the RNG. Every metric is minimised
internally (`m` or `-m`).
"""

from __future__ import annotations

import bisect
import math
import random
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cade_cli.search.samplers import Sampler
from cade_cli.search.searchers.base import Create, Decision, ExitReason, Stop, Train
from cade_cli.search.space import Space

if TYPE_CHECKING:  # the policy module imports this one
    from cade_cli.search.searchers.bracket_policy import LearnedPolicy

# Determined ranks a trial that exited early with math.MaxFloat64 at its rung.
WORST = sys.float_info.max


def rung_lengths(num_rungs: int, divisor: float, max_length: int) -> tuple[int, ...]:
    """Rung i trains to max(int(L / d**(n-1-i)), 1): (3, 3, 9) -> (1, 3, 9)."""
    return tuple(max(int(max_length / divisor ** (num_rungs - 1 - i)), 1)
                 for i in range(num_rungs))


def initial_trial_count(max_concurrent_trials: int, max_trials: int, divisor: float,
                        num_rungs: int) -> int:
    """Trials created at start; each later Stop/report keeps that many running."""
    if max_concurrent_trials > 0:
        return min(max_concurrent_trials, max_trials)
    # 0 = as many as useful: enough that one trial can reach the top rung.
    return max(1, min(int(divisor ** (num_rungs - 1)), max_trials))


def minimised(metric: float, smaller_is_better: bool) -> float:
    """The value ranked internally; NaN and +inf rank with early exits (worst)."""
    value = float(metric) if smaller_is_better else -float(metric)
    if math.isnan(value) or value > WORST:
        return WORST
    return max(value, -WORST)  # keeps snapshots plain JSON (no -Infinity)


@dataclass(frozen=True)
class BracketConfig:
    num_rungs: int
    max_trials: int
    max_concurrent_trials: int  # as configured; 0 = default concurrency
    divisor: int
    max_length: int
    stop_once: bool
    # Shorter lengths its trials also report at, ranked nowhere: the learned bracket policy's
    # unbiased sample of how short trainings predict long ones (bracket_policy.py).
    probe_lengths: tuple[int, ...] = ()

    @property
    def rungs(self) -> tuple[int, ...]:
        return rung_lengths(self.num_rungs, self.divisor, self.max_length)

    @property
    def initial_trials(self) -> int:
        return initial_trial_count(self.max_concurrent_trials, self.max_trials, self.divisor,
                                   self.num_rungs)


class TrialFactory:
    """Hands out 1-based trial ids and params (from the sampler), shared by all brackets."""

    def __init__(self, space: Space, rng: random.Random, sampler: Sampler,
                 next_trial: int = 1) -> None:
        self.space = space
        self.rng = rng
        self.sampler = sampler
        self.next_trial = next_trial
        # searcher.bracket_policy learned: picks the bracket a new trial joins (None: its own).
        self.policy: LearnedPolicy | None = None


    def create(self, bracket: int) -> Create:
        trial = self.next_trial
        self.next_trial += 1
        return Create(trial, self.sampler.propose(trial, self.rng), bracket=bracket)


@dataclass
class RungEntry:
    trial: int
    value: float
    promoted: bool = False


def _entry_value(entry: RungEntry) -> float:
    return entry.value


class Bracket:
    """State shared by both ASHA types: rungs of ranked entries and trial bookkeeping."""

    def __init__(self, index: int, config: BracketConfig, factory: TrialFactory) -> None:
        self.index = index
        self.config = config
        self.factory = factory
        self.lengths = config.rungs
        self.divisor = config.divisor
        self.rungs: list[list[RungEntry]] = [[] for _ in self.lengths]
        self.trial_rung: dict[int, int] = {}   # rung each trial works towards / stands at
        self.closed: set[int] = set()          # stopped by the searcher or exited
        self.exited: set[int] = set()          # early exits that still rank (as worst)
        self.invalid = 0                       # invalid-hyperparameter exits
        # Trials this bracket may create: max_trials, unless the bracket policy moved some.
        self.allowance = config.max_trials

    # -- queries --------------------------------------------------------------------------
    def owns(self, trial: int) -> bool:
        return trial in self.trial_rung

    @property
    def valid_created(self) -> int:
        return len(self.trial_rung) - self.invalid

    @property
    def finished(self) -> bool:
        return (self.valid_created >= self.allowance
                and len(self.closed) == len(self.trial_rung))

    def progress(self) -> float:
        # Determined's estimate: 20% headroom until rung 0 is full, then closed trials.
        max_trials = max(self.allowance, 1)
        reported = len(self.rungs[0])
        estimate = reported / (1.2 * max_trials)
        if reported >= max_trials:
            estimate = max(estimate, (len(self.closed) - self.invalid) / max_trials)
        return min(estimate, 1.0)

    # -- trial creation -------------------------------------------------------------------
    def start(self) -> list[Decision]:
        decisions: list[Decision] = []
        for _ in range(self.config.initial_trials):
            decisions += self.new_trial()
        return decisions

    def new_trial(self) -> list[Decision]:
        create = self.factory.create(self.index)
        self.trial_rung[create.trial] = 0
        return [create, self._first_train(create.trial)]

    def _maybe_new_trial(self) -> list[Decision]:
        if self.factory.policy is not None:  # searcher.bracket_policy learned
            return self.factory.policy.refill(self)
        if self.valid_created < self.allowance:
            return self.new_trial()
        return []

    def _first_train(self, trial: int) -> Train:
        raise NotImplementedError

    def can_grow(self) -> bool:
        """Whether a trial may still join (the learned bracket policy may raise allowance)."""
        return True

    def settle(self) -> list[Decision]:
        """Decisions owed after the bracket policy lowered the allowance."""
        return []

    def report_points(self, lengths: tuple[int, ...]) -> tuple[int, ...]:
        """Where a segment up to max(lengths) reports: those lengths and the probes below."""
        probes = (p for p in self.config.probe_lengths if p < max(lengths))
        return tuple(sorted(set(lengths).union(probes)))

    def _forget_invalid(self, trial: int) -> None:
        """An invalid-hyperparameter trial leaves every rung and does not count."""
        self.invalid += 1
        for rung in self.rungs:
            rung[:] = [entry for entry in rung if entry.trial != trial]

    # -- events ---------------------------------------------------------------------------
    def on_validation(self, trial: int, length: float, value: float) -> list[Decision]:
        raise NotImplementedError

    def on_exit(self, trial: int, reason: ExitReason) -> list[Decision]:
        raise NotImplementedError

    # -- snapshot -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "rungs": [[[e.trial, e.value, e.promoted] for e in rung] for rung in self.rungs],
            "trial_rung": sorted([t, r] for t, r in self.trial_rung.items()),
            "closed": sorted(self.closed),
            "exited": sorted(self.exited),
            "invalid": self.invalid,
        }

    def load_json(self, state: dict[str, Any]) -> None:
        if len(state["rungs"]) != len(self.lengths):
            raise ValueError("snapshot does not match the searcher's rungs")
        self.rungs = [[RungEntry(int(t), float(v), bool(p)) for t, v, p in rung]
                      for rung in state["rungs"]]
        self.trial_rung = {int(t): int(r) for t, r in state["trial_rung"]}
        self.closed = {int(t) for t in state["closed"]}
        self.exited = {int(t) for t in state["exited"]}
        self.invalid = int(state["invalid"])


class StoppingBracket(Bracket):
    """Stopping type: one long segment per trial, stopped when it ranks too low."""

    def _first_train(self, trial: int) -> Train:
        return Train(trial, self.lengths[-1], report_at=self.report_points(self.lengths))

    def on_validation(self, trial: int, length: float, value: float) -> list[Decision]:
        if trial in self.closed:
            return []
        if self._keeps_training(trial, length, value):
            return []
        self.closed.add(trial)
        return [Stop(trial), *self._maybe_new_trial()]

    def _keeps_training(self, trial: int, length: float, value: float) -> bool:
        # One report may qualify for several rungs (validations are not searcher-paced).
        top = len(self.lengths) - 1
        for r in range(self.trial_rung[trial], top + 1):
            self.trial_rung[trial] = r
            if length < self.lengths[r]:
                return True
            rung = self.rungs[r]
            position = bisect.bisect_left(rung, value, key=_entry_value)  # ahead of ties
            rung.insert(position, RungEntry(trial, value))
            if r == top or not self._goes_on(rung, position):
                return False
        return False

    def _goes_on(self, rung: list[RungEntry], position: int) -> bool:
        """Whether the result just ranked at `position` of `rung` keeps its trial training:
        Determined's cutoff, the top int(n / divisor) of the n results, at least one."""
        return position < max(int(len(rung) / self.divisor), 1)

    def on_exit(self, trial: int, reason: ExitReason) -> list[Decision]:
        if trial in self.closed:
            return []
        self.closed.add(trial)
        if reason == ExitReason.INVALID_HP:
            self._forget_invalid(trial)
            return self.new_trial()
        self.exited.add(trial)
        rung = self.rungs[self.trial_rung[trial]]
        rung.insert(bisect.bisect_left(rung, WORST, key=_entry_value), RungEntry(trial, WORST))
        return self._maybe_new_trial()


class PromotionBracket(Bracket):
    """Promotion type: train to the rung, wait, resume when promoted."""

    def __init__(self, index: int, config: BracketConfig, factory: TrialFactory) -> None:
        super().__init__(index, config, factory)
        self.training: set[int] = set()                   # trials with a Train in flight
        self.outstanding: list[int] = [0] * len(self.lengths)  # per rung, of `training`
        # Bottom rungs already closed out: they can never change again, so close-out skips
        # them. Not part of the snapshot (a restored bracket rescans them once, to no effect).
        self.settled_rungs = 0

    def _first_train(self, trial: int) -> Train:
        return self._train(trial, 0)

    def can_grow(self) -> bool:
        return len(self.rungs[0]) < self.allowance  # rungs closed out stay closed

    def settle(self) -> list[Decision]:
        return self._close_out() if len(self.rungs[0]) >= self.allowance else []

    def _train(self, trial: int, rung: int) -> Train:
        self.trial_rung[trial] = rung
        self.training.add(trial)
        self.outstanding[rung] += 1
        length = self.lengths[rung]
        return Train(trial, length, report_at=self.report_points((length,)))

    def on_validation(self, trial: int, length: float, value: float) -> list[Decision]:
        if trial in self.closed or trial not in self.training:
            return []
        if length < self.lengths[self.trial_rung[trial]]:
            return []  # an intermediate report: the rung result comes at the rung length
        return self._report(trial, value)

    def on_exit(self, trial: int, reason: ExitReason) -> list[Decision]:
        if trial in self.closed:
            return []
        self.closed.add(trial)
        was_training = trial in self.training
        if reason == ExitReason.INVALID_HP:
            if was_training:
                self._end_training(trial)
            self._forget_invalid(trial)
            self.settled_rungs = 0  # its results left the rungs: nothing is final any more
            return self.new_trial()
        self.exited.add(trial)
        if was_training:
            return self._report(trial, WORST)
        # A waiting trial keeps its reported value; promoted later, it ranks worst there.
        return []

    def _end_training(self, trial: int) -> int:
        self.training.discard(trial)
        rung = self.trial_rung[trial]
        self.outstanding[rung] -= 1
        return rung

    def _report(self, trial: int, value: float) -> list[Decision]:
        if trial in self.training:
            r = self._end_training(trial)
        else:  # an exited trial promoted into this rung, never trained for it
            r = self.trial_rung[trial]
            self.outstanding[r] -= 1
        decisions: list[Decision] = []
        trained = False
        if r == len(self.lengths) - 1:
            # Recorded for progress and the record only; nothing ranks on the top rung.
            top = self.rungs[r]
            top.insert(bisect.bisect_right(top, value, key=_entry_value), RungEntry(trial, value))
            decisions += self._close(trial)
        else:
            promoted = self._rank(r, trial, value)
            if promoted is not None:
                if promoted in self.closed:
                    # Treated as if it trained the next rung and reported the worst value.
                    self.trial_rung[promoted] = r + 1
                    self.outstanding[r + 1] += 1
                    return self._report(promoted, WORST)
                decisions.append(self._train(promoted, r + 1))
                trained = True
        if not trained:
            decisions += self._maybe_new_trial()
        if len(self.rungs[0]) >= self.allowance:
            decisions += self._close_out()
        return decisions

    def _rank(self, r: int, trial: int, value: float) -> int | None:
        """Insert the result; return the trial to promote out of rung r, if any."""
        rung = self.rungs[r]
        # The promotable count int(n/d) grows by at most one with this result.
        old = int(len(rung) / self.divisor)
        new = int((len(rung) + 1) / self.divisor)
        position = bisect.bisect_right(rung, value, key=_entry_value)  # after ties
        promote_now = position < new
        rung.insert(position, RungEntry(trial, value, promote_now))
        if promote_now:
            return trial
        if new != old and not rung[old].promoted:
            rung[old].promoted = True
            return rung[old].trial
        return None

    def _close(self, trial: int) -> list[Decision]:
        if trial in self.closed:
            return []
        self.closed.add(trial)
        return [Stop(trial)]

    def _close_out(self) -> list[Decision]:
        """Close the un-promoted trials of every rung with no outstanding work at or below."""
        decisions: list[Decision] = []
        for r in range(self.settled_rungs, len(self.rungs)):
            if self.outstanding[r] > 0:
                break
            for entry in self.rungs[r]:
                if not entry.promoted:
                    decisions += self._close(entry.trial)
            # Rung 0 is full and nothing trains at or below r: no result can reach rung r.
            self.settled_rungs = r + 1
        return decisions

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "training": sorted(self.training),
                "outstanding": list(self.outstanding)}

    def load_json(self, state: dict[str, Any]) -> None:
        super().load_json(state)
        self.training = {int(t) for t in state["training"]}
        self.outstanding = [int(n) for n in state["outstanding"]]


def make_bracket(index: int, config: BracketConfig, factory: TrialFactory) -> Bracket:
    if config.stop_once:
        return StoppingBracket(index, config, factory)
    return PromotionBracket(index, config, factory)
