"""ASHA and Adaptive ASHA over arbitrary report streams (hypothesis).

A simulated cluster trains whatever the searcher asks for and delivers reports, early exits,
late reports for closed trials and cancels of waiting trials, in an order hypothesis picks.
An oracle that sees only the events and the decisions checks the rules after every event.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cade_cli.search.searchers.adaptive import AdaptiveAsha, plan_brackets
from cade_cli.search.searchers.asha import (
    AsyncHalving,
    BracketSearch,
    asha_bracket_config,
)
from cade_cli.search.searchers.base import (
    Create,
    Decision,
    ExitReason,
    Shutdown,
    Stop,
    Train,
)
from cade_cli.search.searchers.brackets import BracketConfig
from cade_cli.search.space import Int, Nested
from cade_cli.spec.experiment import SearcherSpec
from cade_cli.spec.searcher_config import AdaptiveAshaConfig

SPACE = Nested((("x", Int(0, 10**6)),))
WORST = sys.float_info.max
METRICS = (0.1, 0.2, 0.2, 0.3, 0.5, 0.9)      # repeated values: ties are common
MAX_INVALID = 3
MAX_STEPS = 5000
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Report:
    trial: int
    length: int
    metric: float


@dataclass(frozen=True)
class Exit:
    trial: int
    reason: ExitReason


Event = Report | Exit


def feed(searcher: BracketSearch, event: Event) -> list[Decision]:
    if isinstance(event, Report):
        return searcher.on_validation(event.trial, event.length, event.metric)
    return searcher.on_exit(event.trial, event.reason)


class Chooser:
    """Choices from hypothesis (shrinkable), then from a seeded RNG once they run out."""

    def __init__(self, picks: list[int], seed: int) -> None:
        self.picks = picks
        self.used = 0
        self.rng = random.Random(seed)

    def __call__(self, n: int) -> int:
        if self.used < len(self.picks):
            self.used += 1
            return self.picks[self.used - 1] % n
        return self.rng.randrange(n)


@dataclass
class Cluster:
    """Runs what the searcher asks for; picks the next event among running trials."""

    stop_once: bool
    allow_exits: bool = True
    pending: dict[int, list[int]] = field(default_factory=dict)  # report lengths to come
    waiting: set[int] = field(default_factory=set)              # segment ended, no new Train
    closed: set[int] = field(default_factory=set)
    invalid: int = 0

    def apply(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if isinstance(d, Train):
                self.pending[d.trial] = list(d.report_at)
                self.waiting.discard(d.trial)
            elif isinstance(d, Stop):
                self.closed.add(d.trial)
                self.pending.pop(d.trial, None)
                self.waiting.discard(d.trial)

    def next_event(self, choose: Callable[[int], int]) -> Event | None:
        running = sorted(t for t, lengths in self.pending.items() if lengths)
        if not running:
            return None
        # Small choices (what hypothesis shrinks towards) mean plain reports.
        roll = choose(50)
        if roll == 49 and self.closed:
            return Report(sorted(self.closed)[choose(len(self.closed))], 10**6, 0.0)
        if roll == 48 and self.waiting and self.allow_exits and not self.stop_once:
            return self._exit(sorted(self.waiting)[choose(len(self.waiting))],
                              ExitReason.CANCELED)
        trial = running[choose(len(running))]
        kind = choose(25) if self.allow_exits else choose(22)
        if kind == 24:
            return self._exit(trial, ExitReason.ERRORED)
        if kind == 23:
            return self._exit(trial, ExitReason.CANCELED)
        if kind == 22 and self.invalid < MAX_INVALID:
            self.invalid += 1
            return self._exit(trial, ExitReason.INVALID_HP)
        lengths = self.pending[trial]
        if kind == 21:  # a validation between rung lengths
            return Report(trial, lengths[0] - 1, METRICS[choose(len(METRICS))])
        skip = choose(len(lengths)) if self.stop_once and choose(3) == 0 else 0
        length = lengths[skip]
        del lengths[:skip + 1]
        if not lengths:
            self.waiting.add(trial)
        return Report(trial, length, METRICS[choose(len(METRICS))])

    def _exit(self, trial: int, reason: ExitReason) -> Exit:
        self.closed.add(trial)
        self.pending.pop(trial, None)
        self.waiting.discard(trial)
        return Exit(trial, reason)


class Oracle:
    """Checks every decision against the rules, knowing only events and decisions."""

    def __init__(self, configs: list[BracketConfig], smaller_is_better: bool) -> None:
        self.configs = configs
        self.sign = 1.0 if smaller_is_better else -1.0
        self.bracket: dict[int, int] = {}
        self.rung: dict[int, int] = {}          # rung each trial works towards
        self.entries: dict[tuple[int, int], list[tuple[int, float]]] = {}
        self.promoted: set[tuple[int, int]] = set()
        self.trained: set[int] = set()
        self.closed: set[int] = set()
        self.invalid = [0] * len(configs)
        self.disturbed = [False] * len(configs)  # an exit happened in the bracket
        self.shutdowns = 0

    def rung_list(self, trial: int, r: int) -> list[tuple[int, float]]:
        return self.entries.setdefault((self.bracket[trial], r), [])

    def check(self, event: Event | None, decisions: list[Decision],
              snapshot: dict[str, object]) -> None:
        assert self.shutdowns == 0 or decisions == [], "decisions after Shutdown"
        if event is not None and event.trial in self.closed:
            assert decisions == [], "an event for a closed trial was not ignored"
            return
        expect_stop = self._observe(event) if event is not None else None
        if expect_stop is not None:
            assert (Stop(event.trial) in decisions) == expect_stop  # type: ignore[union-attr]
        for i, d in enumerate(decisions):
            self._check_decision(d, snapshot)
            if isinstance(d, Shutdown):
                assert i == len(decisions) - 1
        for b, config in enumerate(self.configs):
            assert self.valid_created(b) <= allowance(snapshot, b, config)
            if not config.stop_once and not self.disturbed[b]:
                self._check_promotion_counts(b, config)

    def valid_created(self, b: int) -> int:
        return sum(1 for owner in self.bracket.values() if owner == b) - self.invalid[b]

    def _check_promotion_counts(self, b: int, config: BracketConfig) -> None:
        """Without exits, at least int(n_k / d) of rung k's trials have been promoted."""
        for k in range(config.num_rungs - 1):
            promoted = sum(1 for (t, r) in self.promoted if r == k and self.bracket[t] == b)
            assert promoted >= int(len(self.entries.get((b, k), [])) / config.divisor)

    def _check_close_out(self, trial: int, snapshot: dict[str, object]) -> None:
        """A waiting trial closes only once its rung can promote nobody any more."""
        b = self.bracket[trial]
        config = self.configs[b]
        k = self.rung[trial]
        if k == config.num_rungs - 1:
            return  # reached the top: done
        assert self.valid_created(b) == allowance(snapshot, b, config), \
            "closed while trials remain"
        assert not any(self.bracket[u] == b and self.rung[u] <= k for u in self.trained), \
            "closed while a rung at or below it still has outstanding work"

    def _observe(self, event: Event) -> bool | None:
        """Record the event; for a stopping-type report, whether it must be stopped."""
        trial = event.trial
        config = self.configs[self.bracket[trial]]
        if isinstance(event, Exit):
            self.closed.add(trial)
            self.disturbed[self.bracket[trial]] = True
            if event.reason == ExitReason.INVALID_HP:
                self.invalid[self.bracket[trial]] += 1
                for entries in self.entries.values():
                    entries[:] = [e for e in entries if e[0] != trial]
            elif config.stop_once or trial in self.trained:  # waiting trials keep their value
                self.rung_list(trial, self.rung[trial]).append((trial, WORST))
            self.trained.discard(trial)
            return None
        value = self.sign * event.metric
        if not config.stop_once:
            if trial in self.trained and event.length >= config.rungs[self.rung[trial]]:
                self.rung_list(trial, self.rung[trial]).append((trial, value))
                self.trained.discard(trial)
            return None
        return self._stopping_walk(trial, event.length, value, config)

    def _stopping_walk(self, trial: int, length: int, value: float,
                       config: BracketConfig) -> bool:
        top = config.num_rungs - 1
        for r in range(self.rung[trial], top + 1):
            self.rung[trial] = r
            if length < config.rungs[r]:
                return False
            entries = self.rung_list(trial, r)
            position = sum(1 for _, v in entries if v < value)   # ahead of ties
            entries.append((trial, value))
            if r == top or position >= max(int(len(entries) / config.divisor), 1):
                self.closed.add(trial)
                return True
        raise AssertionError("unreachable")

    def _check_decision(self, d: Decision, snapshot: dict[str, object]) -> None:
        if isinstance(d, Shutdown):
            self.shutdowns += 1
            return
        if isinstance(d, Create):
            assert d.trial == len(self.bracket) + 1, "trial ids are 1-based creation indexes"
            assert 0 <= d.bracket < len(self.configs)
            self.bracket[d.trial] = d.bracket
            self.rung[d.trial] = 0
            return
        assert d.trial in self.bracket
        if isinstance(d, Stop):
            if not self.configs[self.bracket[d.trial]].stop_once:
                assert d.trial not in self.closed, "closed twice"
                self._check_close_out(d.trial, snapshot)
            self.closed.add(d.trial)
            self.trained.discard(d.trial)
            return
        self._check_train(d, snapshot)

    def _check_train(self, d: Train, snapshot: dict[str, object]) -> None:
        assert d.trial not in self.closed, "a closed trial trains again"
        config = self.configs[self.bracket[d.trial]]
        ladder = config.rungs
        assert d.length in ladder and set(d.report_at) <= set(ladder) | set(config.probe_lengths)
        assert list(d.report_at) == sorted(set(d.report_at)) and d.report_at[-1] == d.length
        if config.stop_once:
            assert d.trial not in self.trained and d.length == ladder[-1]
            self.trained.add(d.trial)
            return
        assert d.trial not in self.trained, "Train for a trial already training"
        self.trained.add(d.trial)
        if (d.trial, -1) not in self.promoted:      # its first segment: rung 0
            self.promoted.add((d.trial, -1))
            assert d.length == ladder[0]
            return
        k = self.rung[d.trial]
        assert (d.trial, k) not in self.promoted, "promoted twice out of one rung"
        assert d.length == ladder[k + 1]
        self.promoted.add((d.trial, k))
        self.rung[d.trial] = k + 1
        entries = self.rung_list(d.trial, k)
        own = [v for t, v in entries if t == d.trial]
        assert len(own) == 1, "promoted without a result on its rung"
        # The searcher's rung also holds exited trials it promoted silently (ranked worst):
        # they count in n_k but are never better than anyone.
        brackets = snapshot["brackets"]
        n_k = len(brackets[self.bracket[d.trial]]["rungs"][k])  # type: ignore[index]
        assert n_k >= len(entries)
        better = sum(1 for _, v in entries if v < own[0])
        assert better < int(n_k / config.divisor), "promoted from outside the top 1/divisor"


def allowance(snapshot: dict[str, object], b: int, config: BracketConfig) -> int:
    """The trials bracket b may create: max_trials, unless the learned policy moved some."""
    policy = snapshot.get("bracket_policy")
    return config.max_trials if policy is None else policy["allowances"][b]  # type: ignore[index]


def run_search(searcher: BracketSearch, configs: list[BracketConfig], stop_once: bool,
               smaller_is_better: bool, choose: Callable[[int], int],
               allow_exits: bool) -> list[Event]:
    """Drive the search to its end, checking every step; returns the events fed."""
    cluster = Cluster(stop_once, allow_exits)
    oracle = Oracle(configs, smaller_is_better)
    decisions = searcher.start()
    oracle.check(None, decisions, searcher.snapshot())
    cluster.apply(decisions)
    events: list[Event] = []
    for _ in range(MAX_STEPS):
        event = cluster.next_event(choose)
        if event is None:
            break
        decisions = feed(searcher, event)
        oracle.check(event, decisions, searcher.snapshot())
        cluster.apply(decisions)
        events.append(event)
    else:
        raise AssertionError("the search did not end")
    assert oracle.shutdowns == 1 and searcher.done and searcher.progress() == 1.0
    assert set(oracle.bracket) <= oracle.closed | cluster.closed, "a trial was never closed"
    return events


def replay(cls: type[BracketSearch], spec: SearcherSpec, seed: int, events: list[Event],
           restore_each: bool) -> list[list[Decision]]:
    searcher = cls(spec.config(), SPACE, random.Random(seed))
    log = [searcher.start()]
    for event in events:
        if restore_each:
            snapshot = json.loads(json.dumps(searcher.snapshot(), allow_nan=False))
            searcher = cls.restore(spec.config(), SPACE, snapshot)
        log.append(feed(searcher, event))
    return log


# -- strategies -----------------------------------------------------------------------------

SAMPLERS = st.sampled_from(("random", "tpe"))   # tpe: the learned policy may commit


@st.composite
def asha_specs(draw: st.DrawFn) -> SearcherSpec:
    return SearcherSpec(
        name="async_halving", metric="loss",
        num_rungs=draw(st.integers(1, 4)), divisor=draw(st.integers(2, 4)),
        max_length=draw(st.integers(1, 100)), max_trials=draw(st.integers(1, 60)),
        max_concurrent_trials=draw(st.integers(0, 6)), sampler=draw(SAMPLERS),
        smaller_is_better=draw(st.booleans()), stop_once=draw(st.booleans()))


@st.composite
def adaptive_specs(draw: st.DrawFn) -> SearcherSpec:
    override = draw(st.none() | st.lists(st.integers(1, 4), min_size=1, max_size=3))
    return SearcherSpec(
        name="adaptive_asha", metric="loss", divisor=draw(st.integers(2, 4)),
        max_length=draw(st.integers(1, 200)), max_trials=draw(st.integers(1, 80)),
        mode=draw(st.sampled_from(("aggressive", "standard", "conservative"))),
        max_rungs=draw(st.integers(1, 5)),
        bracket_rungs=tuple(override) if override else None,
        bracket_policy=draw(st.sampled_from(("fixed", "learned"))),
        max_concurrent_trials=draw(st.integers(0, 8)), sampler=draw(SAMPLERS),
        smaller_is_better=draw(st.booleans()), stop_once=draw(st.booleans()))


PICKS = st.lists(st.integers(0, 2**16), max_size=200)
SEEDS = st.integers(0, 2**32 - 1)


def configs_of(spec: SearcherSpec) -> list[BracketConfig]:
    config = spec.config()
    if isinstance(config, AdaptiveAshaConfig):
        return plan_brackets(config)
    return [asha_bracket_config(config)]  # type: ignore[arg-type]


def class_of(spec: SearcherSpec) -> type[BracketSearch]:
    return AdaptiveAsha if spec.name == "adaptive_asha" else AsyncHalving


def checked_run(spec: SearcherSpec, seed: int, picks: list[int],
                allow_exits: bool = True) -> list[Event]:
    searcher = class_of(spec)(spec.config(), SPACE, random.Random(seed))
    return run_search(searcher, configs_of(spec), spec.stop_once, spec.smaller_is_better,
                      Chooser(picks, seed), allow_exits)


# -- properties -----------------------------------------------------------------------------

@PROPERTY_SETTINGS
@given(spec=asha_specs(), seed=SEEDS, picks=PICKS, exits=st.booleans())
def test_asha_rules_hold_and_the_search_ends(spec: SearcherSpec, seed: int,
                                             picks: list[int], exits: bool) -> None:
    assert checked_run(spec, seed, picks, exits), "the search fed no event"


# Found by hypothesis: a slot moved to bracket 1, then a new reference length left too few
# pairs for any correlation, and bracket 1, full, kept its slot idle while bracket 0, whose
# slot had left, still had trials to create: nothing ran and the search never ended.
SLOT_LEFT_FOR_GOOD = SearcherSpec(
    name="adaptive_asha", metric="loss", max_concurrent_trials=1, max_trials=16, max_length=16,
    divisor=2, stop_once=True, mode="conservative", max_rungs=5, bracket_policy="learned")


@PROPERTY_SETTINGS
@given(spec=adaptive_specs(), seed=SEEDS, picks=PICKS, exits=st.booleans())
@example(spec=SLOT_LEFT_FOR_GOOD, seed=810, picks=[], exits=True)
def test_adaptive_rules_hold_and_the_search_ends(spec: SearcherSpec, seed: int,
                                                 picks: list[int], exits: bool) -> None:
    assert checked_run(spec, seed, picks, exits), "the search fed no event"


@PROPERTY_SETTINGS
@given(spec=asha_specs() | adaptive_specs(), seed=SEEDS, picks=PICKS)
def test_same_seed_and_events_give_the_same_decisions(spec: SearcherSpec, seed: int,
                                                      picks: list[int]) -> None:
    events = checked_run(spec, seed, picks)
    cls = class_of(spec)
    assert replay(cls, spec, seed, events, False) == replay(cls, spec, seed, events, False)


@PROPERTY_SETTINGS
@given(spec=asha_specs() | adaptive_specs(), seed=SEEDS, picks=PICKS)
def test_restoring_after_every_event_changes_nothing(spec: SearcherSpec, seed: int,
                                                     picks: list[int]) -> None:
    events = checked_run(spec, seed, picks)
    cls = class_of(spec)
    assert replay(cls, spec, seed, events, True) == replay(cls, spec, seed, events, False)


LONG_RUNS = [
    SearcherSpec(name="async_halving", metric="loss", num_rungs=4, divisor=3, max_length=270,
                 max_trials=150, max_concurrent_trials=8, stop_once=False),
    SearcherSpec(name="async_halving", metric="acc", num_rungs=4, divisor=2, max_length=64,
                 max_trials=150, max_concurrent_trials=0, stop_once=True,
                 smaller_is_better=False),
    SearcherSpec(name="adaptive_asha", metric="loss", divisor=3, max_length=243,
                 max_trials=200, mode="conservative", max_concurrent_trials=12),
    SearcherSpec(name="adaptive_asha", metric="loss", divisor=2, max_length=100,
                 max_trials=200, mode="standard", max_concurrent_trials=0, stop_once=True),
    SearcherSpec(name="adaptive_asha", metric="loss", divisor=3, max_length=243,
                 max_trials=200, mode="standard", max_concurrent_trials=12,
                 bracket_policy="learned"),
    SearcherSpec(name="adaptive_asha", metric="loss", divisor=2, max_length=100,
                 max_trials=200, mode="standard", max_concurrent_trials=6, stop_once=True,
                 bracket_policy="learned"),
    # The model-based sampler with the learned policy (committing: tests/test_bracket_policy.py).
    SearcherSpec(name="adaptive_asha", metric="loss", divisor=3, max_length=81,
                 max_trials=200, mode="standard", max_concurrent_trials=8,
                 bracket_policy="learned", sampler="tpe"),
]


def test_long_runs_restored_after_every_event() -> None:
    for index, spec in enumerate(LONG_RUNS):
        events = checked_run(spec, seed=index, picks=[])
        assert len(events) > 200
        cls = class_of(spec)
        assert replay(cls, spec, index, events, True) == replay(cls, spec, index, events, False)
