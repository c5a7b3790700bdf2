"""`searcher.bracket_policy: learned` for Adaptive ASHA (a cade extension). Pure.

Determined gives each bracket a fixed share of `max_trials`. When short trainings rank
configurations badly, the brackets that stop early spend their share on decisions the top
rung later contradicts. The learned policy measures that: for every rung length it ranks the
trials seen there against the same trials at the reference length (the highest rung length
with at least `MIN_PAIRS` results) and takes Spearman's rank correlation. A bracket's
*trust* is the lowest correlation over the rungs where it stops trials (clipped at 0); the
one-rung bracket stops nothing and is always trusted (the policy adds it to the plan).

Determined splits `max_trials` so that each bracket spends about the same training: a hedge,
since nobody knows beforehand whether short trainings rank well. Once the reference is the
longest rung length itself, the policy knows how far each bracket's stopping decisions
agree with the final ranking, and retires that hedge as far as the evidence goes: a bracket
that stops later gets its share times the doubt left about the brackets that stop earlier
(1 minus the highest trust among them), never less than 1/divisor of it (the share a rung
passes on in ASHA), so every bracket keeps reporting and the measurement goes on. Before
that (a reference shorter than the longest rung says nothing about the final ranking) the
doubt is 1.

Whenever a bracket's slot frees up, the policy creates the next trial in the open bracket
(one with trials of its allowance left) furthest behind its learned share: share_b is
proportional to Determined's split of max_trials times trust_b times doubt_b. The slot
moves with the trial, and so does one trial of the asking bracket's allowance when it had
any left; a bracket with none left hands its slot on instead of letting it idle. Until some
correlation is measured, an open bracket keeps its own slot, as under the default policy;
so it does when none is any more (a new reference length with too few pairs), except that
once a slot has moved, a full bracket hands its free slot to the open bracket with the most
trials left: the bracket a slot left has none coming back.
A bracket is closed (its allowance lowered to the trials it created, so its waiting trials
are promoted or stopped for good) only on a measurement against the longest rung: before
that it keeps one trial of allowance in hand and, while untrusted, merely gets no new
trials. Readings from a few pairs swing (a rung that ranks well can read below 0 from ten
pairs), and a closed bracket cannot reopen, so closing on them threw away brackets that
later readings trusted.

With a sampler that builds a model (`sampler: tpe`) the policy also commits: once the
reference is one of the two longest rung lengths and the bracket with the most rungs is
trusted to COMMIT_TRUST or more, every new trial goes to that bracket (the others' hedge
retired for good), except while the sampler's model is built on one of the two longest
levels. A model that moved up says the short rungs mislead near the best trials
(samplers/tpe.py), which is what the hedge is for, so the learned weights apply again then.
With random sampling nothing watches for that, and committing is not done.
The total trial budget and the number of trials running at once are unchanged. The snapshot
holds the allowances, the reports kept, the last measurement and whether it committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cade_cli.search.rank_correlation import (
    MIN_PAIRS,
    reference_length,
    rung_correlations,
)
from cade_cli.search.searchers.brackets import WORST

COMMIT_TRUST = 0.6   # the most-rung bracket's trust that commits every new trial to it

if TYPE_CHECKING:
    from cade_cli.search.samplers import Sampler
    from cade_cli.search.searchers.base import Decision
    from cade_cli.search.searchers.brackets import Bracket


def describe(policy: str) -> str:
    """One line for `cade preview`: what the policy does, and the other choice."""
    if policy == "learned":
        return (f"learned: a full-length bracket is added and every trial also reports at the "
                f"shorter rung lengths; once {MIN_PAIRS}+ trials have results at two rung "
                f"lengths, new trials go to the brackets in proportion to Determined's share "
                f"times how well the rungs where they stop trials rank them as the longest "
                f"rung does (rank correlation); once that is measured against the longest rung "
                f"itself, the brackets that stop later also give up the share the brackets "
                f"that stop earlier are trusted with (keeping at least 1/divisor of it); "
                f"a bracket is closed only on a measurement against the longest rung; with "
                f"sampler: tpe, all new trials go to the bracket with the most rungs once "
                f"it is trusted to {COMMIT_TRUST} against one of the two longest rungs, "
                f"except while the model is built on one of those")
    return ("fixed: each bracket gets Determined's share of max_trials; `bracket_policy: "
            "learned` moves trials to the brackets whose early rungs rank trials as the "
            "longest rung does")


def trust(bracket: Bracket, correlations: dict[int, float]) -> float:
    """How far the rungs where `bracket` stops trials predict the reference (0..1)."""
    stopping = [correlations[length] for length in bracket.lengths[:-1] if length in correlations]
    return max(0.0, min(stopping)) if stopping else 1.0


def learned_weights(brackets: Sequence[Bracket], correlations: dict[int, float],
                    final: bool) -> dict[int, float]:
    """Bracket index -> its weight: Determined's share x trust x doubt (module docstring).

    `final`: the correlations were measured against the longest rung length; only then
    does trust in the brackets that stop earlier retire the later brackets' hedge.
    """
    weights: dict[int, float] = {}
    relied_on = 0.0   # the highest trust among the brackets that stop earlier
    for bracket in sorted(brackets, key=lambda b: -len(b.lengths)):
        trusted = trust(bracket, correlations)
        doubt = max(1 / bracket.divisor, 1 - relied_on) if final else 1.0
        weights[bracket.index] = bracket.config.max_trials * trusted * doubt
        relied_on = max(relied_on, trusted)
    return weights


def committed_weights(brackets: Sequence[Bracket]) -> dict[int, float]:
    """Bracket index -> its weight once committed: all to the brackets with the most rungs."""
    most = max(len(bracket.lengths) for bracket in brackets)
    return {bracket.index: float(len(bracket.lengths) == most) for bracket in brackets}


class LearnedPolicy:
    """Chooses the bracket a new trial joins (see the module docstring)."""

    def __init__(self, brackets: Sequence[Bracket], sampler: Sampler) -> None:
        self.brackets = brackets
        self.sampler = sampler
        lengths = {length for bracket in brackets for length in bracket.lengths}
        self.seen: dict[int, dict[int, float]] = {length: {} for length in sorted(lengths)}
        self.results = 0        # reports kept in `seen`
        self.measured_at = 0    # `results` when `correlations` were last measured
        self.correlations: dict[int, float] = {}
        self.final = False      # whether `correlations` are against the longest rung length
        self.committed = False  # whether the most-rung bracket was trusted to COMMIT_TRUST
        self.moved_slot = False  # whether a slot ever moved to another bracket

    def current_correlations(self) -> dict[int, float]:
        """rung_correlations, measured again once the results grew by a tenth (or 5): the
        cost stays O(n log n) over a search instead of O(n^2 log n)."""
        if self.results >= self.measured_at + max(MIN_PAIRS, self.measured_at // 10):
            self.correlations = rung_correlations(self.seen)
            self.final = reference_length(self.seen) == max(self.seen)
            self.measured_at = self.results
        return self.correlations

    def observe(self, trial: int, length: float, value: float) -> None:
        """A report (minimised); kept where it lands on a rung length."""
        results = self.seen.get(int(length)) if length == int(length) else None
        if results is not None and value != WORST:  # an early exit says nothing of ranks
            self.results += trial not in results
            results[trial] = value

    def refill(self, asking: Bracket) -> list[Decision]:
        """A slot of `asking` is free: create a trial in the bracket the policy picks."""
        correlations = self.current_correlations()
        if not correlations:  # nothing learned (yet, or since the reference moved up)
            return self._own_slot(asking)
        weights = self.weights(correlations)
        total_weight = sum(weights.values()) or 1.0
        budget = sum(b.allowance for b in self.brackets)
        decisions = self._rebalance({i: w / total_weight * budget for i, w in weights.items()})
        open_ = [b for b in self.brackets if b.valid_created < b.allowance]
        if not open_:
            return decisions
        created = sum(b.valid_created for b in self.brackets) + 1

        def behind(bracket: Bracket) -> float:  # its share of the trials so far, minus its own
            return weights[bracket.index] / total_weight * created - bracket.valid_created

        # The asking bracket first: it keeps its slot unless another is further behind.
        ordered = sorted(open_, key=lambda b: b is not asking)
        chosen = max(ordered, key=behind)
        self.moved_slot |= chosen is not asking
        return chosen.new_trial() + decisions

    def _own_slot(self, asking: Bracket) -> list[Decision]:
        """Without correlations, Determined's rule: a bracket's slot creates its own trials,
        and idles once they are all created. Once slots have moved, though, a bracket whose
        slot left has none to come back: the free slot goes to the open bracket with the
        most trials left, or the search would wait for ever with trials still to create."""
        if asking.valid_created < asking.allowance:
            return asking.new_trial()
        open_ = [b for b in self.brackets if b.valid_created < b.allowance]
        if not (self.moved_slot and open_):
            return []
        return max(open_, key=lambda b: b.allowance - b.valid_created).new_trial()

    def weights(self, correlations: dict[int, float]) -> dict[int, float]:
        """Bracket index -> its weight now: the learned weights, or all to the brackets with
        the most rungs once committed (the module docstring), which this also decides."""
        if self.sampler.builds_model and not self.committed:
            lengths = sorted(self.seen)
            reference = reference_length(self.seen)
            most_rungs = max(self.brackets, key=lambda bracket: len(bracket.lengths))
            self.committed = (reference is not None and reference in lengths[-2:]
                              and trust(most_rungs, correlations) >= COMMIT_TRUST)
        if self.committed and not self.sampler.model_on_long_levels():
            return committed_weights(self.brackets)
        return learned_weights(self.brackets, correlations, self.final)

    def _rebalance(self, targets: dict[int, float]) -> list[Decision]:
        """Move allowance from brackets above their target to those below (whole trials);
        before the measurement is final, a donor keeps one trial in hand (not closed)."""
        kept = 0 if self.final else 1
        decisions: list[Decision] = []
        while True:
            donors = [b for b in self.brackets if b.valid_created + kept < b.allowance
                      and b.allowance - targets[b.index] >= 1]
            takers = [b for b in self.brackets if b.can_grow()
                      and targets[b.index] - b.allowance >= 1]
            if not donors or not takers:
                return decisions
            donor = max(donors, key=lambda b: b.allowance - targets[b.index])
            taker = max(takers, key=lambda b: targets[b.index] - b.allowance)
            moved = int(min(donor.allowance - targets[donor.index],
                            targets[taker.index] - taker.allowance,
                            donor.allowance - donor.valid_created - kept))
            donor.allowance -= moved
            taker.allowance += moved
            decisions += donor.settle()

    def to_json(self) -> dict[str, Any]:
        return {"allowances": [b.allowance for b in self.brackets],
                "seen": [[length, sorted([t, v] for t, v in results.items())]
                         for length, results in self.seen.items()],
                "measured_at": self.measured_at,
                "correlations": sorted([length, rho] for length, rho in self.correlations.items()),
                "final": self.final, "committed": self.committed, "moved_slot": self.moved_slot}

    def load_json(self, state: dict[str, Any]) -> None:
        for bracket, allowance in zip(self.brackets, state["allowances"]):
            bracket.allowance = int(allowance)
        self.seen = {int(length): {int(t): float(v) for t, v in results}
                     for length, results in state["seen"]}
        self.results = sum(len(results) for results in self.seen.values())
        self.measured_at = int(state["measured_at"])
        self.correlations = {int(length): float(rho) for length, rho in state["correlations"]}
        self.final = bool(state.get("final", False))
        self.committed = bool(state.get("committed", False))
        # A snapshot from before this was kept: slots may have moved if anything was measured.
        self.moved_slot = bool(state.get("moved_slot", self.measured_at > 0))
