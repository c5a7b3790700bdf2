"""`searcher.bracket_policy: learned` (Adaptive ASHA): reading, plan, and what it learns.

The rules every bracket keeps under the policy (promotions, close-out, snapshot/restore
after every event) are checked by tests/test_searcher_properties.py, which draws the policy
for Adaptive ASHA specs.
"""

from __future__ import annotations

import json
import math
import random
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from cade_cli.cli import cli
from cade_cli.errors import SpecError
from cade_cli.search.rank_correlation import rung_correlations, spearman
from cade_cli.search.searchers.adaptive import AdaptiveAsha, plan_brackets
from cade_cli.search.searchers.bracket_policy import COMMIT_TRUST, learned_weights
from cade_cli.search.simulate import Simulation
from cade_cli.search.space import Double, Nested
from cade_cli.spec.experiment import SearcherSpec, parse_spec

SPACE = Nested((("x", Double(0.0, 1.0)),))


def spec_text(searcher: str, extra: str) -> str:
    return ("name: t\nentrypoint: python train.py\nhyperparameters:\n"
            "  x: {type: double, minval: 0.0, maxval: 1.0}\n"
            f"searcher:\n  name: {searcher}\n  metric: loss\n  max_trials: 20\n"
            "  max_length: 81\n" + textwrap.indent(extra + "\n", "  "))


def adaptive(policy: str, max_trials: int = 120, sampler: str = "random") -> SearcherSpec:
    return SearcherSpec(name="adaptive_asha", metric="loss", max_trials=max_trials,
                        max_length=81, divisor=3, max_rungs=4, mode="standard",
                        max_concurrent_trials=4, bracket_policy=policy, sampler=sampler)


def test_spearman_ranks_ties_and_orders() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0   # no spread: nothing learned
    # Ties share their average rank: ranks (1.5, 1.5, 3) against (1, 2, 3).
    assert spearman([5, 5, 9], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)


def test_correlations_need_enough_results_and_use_the_highest_such_length() -> None:
    few = {3: {1: 0.1, 2: 0.2}, 27: {1: 0.1, 2: 0.2}}
    assert rung_correlations(few) == {}
    inverted = {3: {t: float(t) for t in range(1, 7)}, 9: {t: float(-t) for t in range(1, 7)},
                81: {1: 0.0}}   # 81 has too few results to be the reference
    assert rung_correlations(inverted) == {3: pytest.approx(-1.0)}


def test_the_key_reads_defaults_and_is_located() -> None:
    default = parse_spec(spec_text("adaptive_asha", ""), "spec.yaml")
    assert default.searcher.bracket_policy == "fixed"
    learned = parse_spec(spec_text("adaptive_asha", "bracket_policy: learned"), "spec.yaml")
    assert learned.searcher.bracket_policy == "learned"
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_text("adaptive_asha", "bracket_policy: smart"), "spec.yaml")
    assert str(caught.value) == ("spec.yaml:10: searcher.bracket_policy: expected one of "
                                 "fixed, learned, found 'smart' (a string)")
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_text("async_halving", "num_rungs: 3\nbracket_policy: learned"),
                   "spec.yaml")
    assert str(caught.value) == ("spec.yaml:11: searcher.bracket_policy: unknown key: not "
                                 "used by the 'async_halving' searcher (a key of: adaptive_asha)")


def test_learned_plans_a_full_length_bracket_and_probe_reports() -> None:
    fixed = plan_brackets(adaptive("fixed"))
    assert [c.num_rungs for c in fixed] == [4, 3, 2]
    assert all(c.probe_lengths == () for c in fixed)
    learned = plan_brackets(adaptive("learned"))
    assert [c.num_rungs for c in learned] == [4, 3, 2, 1]
    assert all(c.probe_lengths == (3, 9, 27) for c in learned)


def misleading(params: dict[str, float], length: int, trial: int) -> float:
    """Length 3 ranks points in reverse (the best at length 81 start worst); 9 on rank
    them as 81 does."""
    x = params["x"]
    return x + 2.0 * (1.0 - x) * 27.0 / (length * length)


def faithful(params: dict[str, float], length: int, trial: int) -> float:
    return params["x"] + 1.0 / length


def run(policy: str, objective: object, seed: int = 3, sampler: str = "random") -> AdaptiveAsha:
    searcher = AdaptiveAsha(adaptive(policy, sampler=sampler), SPACE, random.Random(seed))
    Simulation(searcher, objective, workers=4, validation_period=None,  # type: ignore[arg-type]
               smaller_is_better=True, full_length=81).run()
    assert searcher.done
    return searcher


def created(searcher: AdaptiveAsha) -> list[int]:
    return [bracket.valid_created for bracket in searcher.brackets]


def test_misleading_rungs_send_trials_to_the_brackets_that_stop_late() -> None:
    searcher = run("learned", misleading)
    policy = searcher.factory.policy
    assert policy is not None
    assert policy.correlations[3] < 0
    assert policy.correlations[9] > 0.9
    counts = created(searcher)
    assert sum(counts) == 120   # the trial budget is kept
    shares = [config.max_trials for config in plan_brackets(adaptive("learned"))]
    # The bracket that stops trials at length 3 loses trials to the others.
    assert counts[0] < shares[0] - 20
    assert sum(counts[1:]) > sum(shares[1:]) + 20


def test_faithful_rungs_send_trials_to_the_bracket_that_stops_earliest() -> None:
    """Every rung ranks trials as the longest does: once that is measured against the longest
    rung, the brackets that stop later keep 1/divisor of Determined's share."""
    searcher = run("learned", faithful)
    policy = searcher.factory.policy
    assert policy is not None and policy.final
    assert all(rho == pytest.approx(1.0) for rho in policy.correlations.values())
    shares = [config.max_trials for config in plan_brackets(adaptive("learned"))]
    counts = created(searcher)
    assert sum(counts) == 120
    assert counts[0] > shares[0] + 20
    assert all(count < share for count, share in zip(counts[1:], shares[1:]))


def test_a_bracket_is_closed_only_on_a_measurement_against_the_longest_rung() -> None:
    """Before the reference is the longest rung, an untrusted bracket gets no new trials but
    keeps one in hand, so its waiting trials stay open and a later reading can trust it."""
    searcher = AdaptiveAsha(adaptive("learned"), SPACE, random.Random(0))
    searcher.start()
    policy = searcher.factory.policy
    assert policy is not None
    first, second = searcher.brackets[0], searcher.brackets[1]
    # No results reported yet, so refill keeps the readings set here (none to measure again).
    policy.correlations, policy.final = {3: -0.5, 9: 0.8, 27: 0.9}, False  # length 3 misleads
    created_before = first.valid_created
    policy.refill(second)
    assert first.valid_created == created_before   # no new trial where it is untrusted
    assert first.allowance == first.valid_created + 1
    assert not first.finished and first.can_grow()
    policy.correlations = {3: 0.9, 9: 0.8, 27: 0.9}   # a later reading trusts it again
    policy.refill(second)
    assert first.allowance > first.valid_created + 1
    policy.correlations, policy.final = {3: -0.5, 9: 0.8, 27: 0.9}, True
    policy.refill(second)
    assert first.allowance == first.valid_created   # measured against 81: closed


def test_learned_weights_retire_the_hedge_only_against_the_longest_rung() -> None:
    brackets = AdaptiveAsha(adaptive("learned"), SPACE, random.Random(0)).brackets
    assert [b.lengths for b in brackets] == [(3, 9, 27, 81), (9, 27, 81), (27, 81), (81,)]
    shares = [b.config.max_trials for b in brackets]
    assert shares == [68, 29, 14, 9]
    faithful_rungs = {3: 1.0, 9: 1.0, 27: 1.0}
    # Measured against a shorter reference: Determined's split, times trust.
    assert learned_weights(brackets, faithful_rungs, final=False) == {0: 68, 1: 29, 2: 14, 3: 9}
    assert learned_weights(brackets, faithful_rungs, final=True) == pytest.approx(
        {0: 68, 1: 29 / 3, 2: 14 / 3, 3: 9 / 3})
    # Trusts 0.5, 0.8, 0.9, 1: each later bracket keeps the doubt left about the earlier
    # ones (1 - the highest trust among them), at least a third.
    assert learned_weights(brackets, {3: 0.5, 9: 0.8, 27: 0.9}, final=True) == pytest.approx(
        {0: 68 * 0.5, 1: 29 * 0.8 * 0.5, 2: 14 * 0.9 / 3, 3: 9 / 3})
    # Length 3 ranks in reverse: the first bracket is trusted with nothing, so the second
    # keeps its whole share.
    assert learned_weights(brackets, {3: -0.9, 9: 0.8, 27: 0.9}, final=True) == pytest.approx(
        {0: 0.0, 1: 29 * 0.8, 2: 14 * 0.9 / 3, 3: 9 / 3})


def test_with_a_model_the_policy_commits_to_the_bracket_with_the_most_rungs() -> None:
    """Every rung ranks as the longest does: with `sampler: tpe`, once that is measured
    against one of the two longest rungs, every new trial goes to the four-rung bracket;
    with random sampling the other brackets keep their 1/divisor."""
    hedged = run("learned", faithful)
    committed = run("learned", faithful, sampler="tpe")
    assert hedged.factory.policy is not None and not hedged.factory.policy.committed
    assert committed.factory.policy is not None and committed.factory.policy.committed
    assert sum(created(committed)) == sum(created(hedged)) == 120
    assert sum(created(committed)[1:]) < sum(created(hedged)[1:]) / 2
    snapshot = json.loads(json.dumps(committed.snapshot()))
    assert snapshot["bracket_policy"]["committed"] is True
    restored = AdaptiveAsha.restore(adaptive("learned", sampler="tpe"), SPACE, snapshot)
    assert restored.factory.policy is not None and restored.factory.policy.committed
    del snapshot["bracket_policy"]["committed"]   # a snapshot from before committing
    older = AdaptiveAsha.restore(adaptive("learned", sampler="tpe"), SPACE, snapshot)
    assert older.factory.policy is not None and not older.factory.policy.committed


class LoggedSearch:
    """The searcher and the decisions it made; with `restore_each`, snapshotted (through
    JSON) and restored before every event."""

    def __init__(self, spec: SearcherSpec, seed: int, restore_each: bool) -> None:
        self.spec = spec
        self.searcher = AdaptiveAsha(spec, SPACE, random.Random(seed))
        self.restore_each = restore_each
        self.decisions: list[object] = []

    def _restored(self) -> AdaptiveAsha:
        if not self.restore_each:
            return self.searcher
        snapshot = json.loads(json.dumps(self.searcher.snapshot()))
        self.searcher = AdaptiveAsha.restore(self.spec, SPACE, snapshot)
        return self.searcher

    def start(self) -> list[object]:
        return self._log(self.searcher.start())

    def on_validation(self, trial: int, length: float, metric: float) -> list[object]:
        return self._log(self._restored().on_validation(trial, length, metric))

    def on_exit(self, trial: int, reason: object) -> list[object]:
        return self._log(self._restored().on_exit(trial, reason))  # type: ignore[arg-type]

    def progress(self) -> float:
        return self.searcher.progress()

    def _log(self, decisions: list[object]) -> list[object]:
        self.decisions.append(decisions)
        return decisions


def test_a_committing_search_restored_after_every_event_decides_the_same() -> None:
    spec = adaptive("learned", sampler="tpe")
    plain, restored = LoggedSearch(spec, 5, False), LoggedSearch(spec, 5, True)
    for searcher in (plain, restored):
        Simulation(searcher, faithful, workers=4, validation_period=None,  # type: ignore[arg-type]
                   smaller_is_better=True, full_length=81).run()
    assert len(plain.decisions) > 200
    assert restored.decisions == plain.decisions
    assert restored.searcher.factory.policy is not None
    assert restored.searcher.factory.policy.committed


def test_a_model_on_the_longest_levels_brings_the_hedge_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    searcher = AdaptiveAsha(adaptive("learned", sampler="tpe"), SPACE, random.Random(0))
    searcher.start()
    policy = searcher.factory.policy
    assert policy is not None
    for trial in range(1, 7):   # six results at 27 and 81: 27 is the longest but one
        for length in (3, 27, 81):
            policy.observe(trial, length, trial + 1 / length)
    faithful_rungs = {3: 1.0, 9: 1.0, 27: 1.0}
    monkeypatch.setattr(searcher.factory.sampler, "model_on_long_levels", lambda: False)
    assert policy.weights(faithful_rungs) == {0: 1.0, 1: 0.0, 2: 0.0, 3: 0.0}
    assert policy.committed
    monkeypatch.setattr(searcher.factory.sampler, "model_on_long_levels", lambda: True)
    assert policy.weights(faithful_rungs) == learned_weights(searcher.brackets,
                                                             faithful_rungs, policy.final)
    monkeypatch.setattr(searcher.factory.sampler, "model_on_long_levels", lambda: False)
    assert policy.weights({3: 0.1, 9: 0.1, 27: 0.1}) == {0: 1.0, 1: 0.0, 2: 0.0, 3: 0.0}


def test_an_untrusted_or_early_reading_does_not_commit() -> None:
    searcher = AdaptiveAsha(adaptive("learned", sampler="tpe"), SPACE, random.Random(0))
    searcher.start()
    policy = searcher.factory.policy
    assert policy is not None
    for trial in range(1, 7):   # results up to 9 only: the reference is not a long one
        for length in (3, 9):
            policy.observe(trial, length, trial + 1 / length)
    policy.weights({3: 1.0})
    assert not policy.committed
    for trial in range(1, 7):
        policy.observe(trial, 81, float(trial))
    policy.weights({3: COMMIT_TRUST - 0.01, 9: 1.0, 27: 1.0})
    assert not policy.committed
    policy.weights({3: COMMIT_TRUST, 9: 1.0, 27: 1.0})
    assert policy.committed


def test_the_default_policy_writes_the_snapshots_it_wrote_before() -> None:
    fixed = run("fixed", misleading)
    assert "bracket_policy" not in fixed.snapshot()
    assert fixed.factory.policy is None
    learned = run("learned", misleading)
    state = learned.snapshot()["bracket_policy"]
    assert sum(state["allowances"]) == 120


def test_a_slot_that_moved_is_handed_on_when_nothing_is_measured_any_more() -> None:
    """Bracket 0's only slot moved to bracket 1; then the correlations are gone (a new
    reference length, too few pairs). Bracket 1, full, hands the slot on to bracket 0."""
    searcher = AdaptiveAsha(adaptive("learned", max_trials=16), SPACE, random.Random(0))
    policy = searcher.factory.policy
    assert policy is not None
    first, second = searcher.brackets[:2]
    second.allowance = second.valid_created   # full
    first.allowance = first.valid_created + 3   # trials left, its slot gone
    policy.correlations, policy.measured_at, policy.results = {}, 10, 10
    assert policy.refill(second) == []   # no slot ever moved: Determined's rule, it idles
    policy.moved_slot = True
    decisions = policy.refill(second)
    assert [type(d).__name__ for d in decisions] == ["Create", "Train"]
    assert decisions[0].bracket == 0   # type: ignore[attr-defined]
    snapshot = json.loads(json.dumps(searcher.snapshot()))
    assert snapshot["bracket_policy"]["moved_slot"] is True
    del snapshot["bracket_policy"]["moved_slot"]   # an older snapshot: measured, so maybe moved
    restored = AdaptiveAsha.restore(adaptive("learned", max_trials=16), SPACE, snapshot)
    assert restored.factory.policy is not None and restored.factory.policy.moved_slot is True


def test_a_snapshot_from_before_the_final_flag_restores_as_not_final() -> None:
    learned = run("learned", faithful)
    snapshot = json.loads(json.dumps(learned.snapshot()))
    assert snapshot["bracket_policy"]["final"] is True
    del snapshot["bracket_policy"]["final"]
    restored = AdaptiveAsha.restore(adaptive("learned"), SPACE, snapshot)
    assert restored.factory.policy is not None and restored.factory.policy.final is False
    assert restored.factory.policy.correlations == learned.factory.policy.correlations


def test_preview_explains_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(spec_text("adaptive_asha", "bracket_policy: learned"), encoding="utf-8")
    shown = CliRunner().invoke(cli, ["preview", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "Bracket policy: learned: a full-length bracket is added" in shown.stdout
    plan = json.loads(CliRunner().invoke(cli, ["preview", str(path), "--json"]).stdout)
    assert plan["bracket_policy"] == "learned"
    assert [len(b["rungs"]) for b in plan["brackets"]][-1] == 1
    path.write_text(spec_text("adaptive_asha", ""), encoding="utf-8")
    default = CliRunner().invoke(cli, ["preview", str(path)])
    assert "Bracket policy: fixed: each bracket gets Determined's share" in default.stdout
    path.write_text(spec_text("async_halving", "num_rungs: 3"), encoding="utf-8")
    single = CliRunner().invoke(cli, ["preview", str(path), "--json"])
    assert "bracket_policy" not in json.loads(single.stdout)
