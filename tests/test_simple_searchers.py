"""Single, random and grid searchers, and the factory."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cade_cli.errors import SpecError
from cade_cli.search.searchers import make_searcher, restore_searcher
from cade_cli.search.searchers.base import (
    Create,
    Decision,
    ExitReason,
    Shutdown,
    Stop,
    Train,
)
from cade_cli.search.searchers.simple import Grid, Random, Single
from cade_cli.search.space import Categorical, Double, Int, Nested, grid, sample
from cade_cli.spec.experiment import OPEN_LENGTH, SearcherSpec

SPACE = Nested((("lr", Double(0.0, 1.0, count=2)), ("n", Int(1, 3, count=3))))


def spec(name: str = "random", **fields: Any) -> SearcherSpec:
    fields.setdefault("max_length", 100)
    if name == "random":
        fields.setdefault("max_trials", 5)
    return SearcherSpec(name=name, metric="loss", **fields)


def creates(decisions: list[Decision]) -> list[int]:
    return [d.trial for d in decisions if isinstance(d, Create)]


def test_random_start_creates_up_to_concurrency() -> None:
    searcher = make_searcher(spec(max_trials=5, max_concurrent_trials=2), SPACE, 3)
    decisions = searcher.start()
    rng = random.Random(3)
    assert decisions == [
        Create(1, sample(SPACE, rng)), Train(1, 100, (100,)),
        Create(2, sample(SPACE, rng)), Train(2, 100, (100,)),
    ]


@pytest.mark.parametrize(("concurrency", "expected"), [(0, 5), (16, 5), (3, 3)])
def test_random_initial_count(concurrency: int, expected: int) -> None:
    searcher = make_searcher(spec(max_trials=5, max_concurrent_trials=concurrency), SPACE, 0)
    assert creates(searcher.start()) == list(range(1, expected + 1))


def test_random_closes_at_max_length_and_refills() -> None:
    searcher = make_searcher(spec(max_trials=3, max_concurrent_trials=2), SPACE, 0)
    searcher.start()
    assert searcher.on_validation(1, 50, 0.3) == []           # not there yet
    decisions = searcher.on_validation(1, 100, 0.3)
    assert decisions[0] == Stop(1) and creates(decisions) == [3]
    assert searcher.on_validation(1, 100, 0.3) == []          # closed: ignored
    assert searcher.on_validation(2, 100, 0.1) == [Stop(2)]   # budget used
    assert not searcher.done
    assert searcher.progress() == pytest.approx(2 / 3)
    assert searcher.on_validation(3, 120, 0.1) == [Stop(3), Shutdown()]
    assert searcher.done and searcher.progress() == 1.0
    assert searcher.on_exit(3, ExitReason.ERRORED) == []


def test_errored_trials_count_invalid_ones_do_not() -> None:
    searcher = make_searcher(spec(max_trials=2, max_concurrent_trials=1), SPACE, 0)
    searcher.start()
    assert creates(searcher.on_exit(1, ExitReason.INVALID_HP)) == [2]
    assert creates(searcher.on_exit(2, ExitReason.ERRORED)) == [3]
    assert searcher.on_exit(3, ExitReason.CANCELED) == [Shutdown()]
    assert searcher.done


def test_single_is_one_trial() -> None:
    searcher = make_searcher(spec("single"), Nested((("x", Categorical(("a",))),)), 0)
    assert isinstance(searcher, Single)
    assert searcher.start() == [Create(1, {"x": "a"}), Train(1, 100, (100,))]
    assert searcher.on_validation(1, 100, 1.0) == [Stop(1), Shutdown()]


def test_single_replaces_an_invalid_trial() -> None:
    searcher = make_searcher(spec("single"), SPACE, 0)
    searcher.start()
    assert creates(searcher.on_exit(1, ExitReason.INVALID_HP)) == [2]


def test_grid_walks_the_points_in_order() -> None:
    searcher = make_searcher(spec("grid", max_concurrent_trials=2), SPACE, 0)
    assert isinstance(searcher, Grid)
    points = grid(SPACE)
    decisions = searcher.start()
    assert decisions == [Create(1, points[0]), Train(1, 100, (100,)),
                         Create(2, points[1]), Train(2, 100, (100,))]
    created = [d for d in searcher.on_validation(2, 100, 0.5) if isinstance(d, Create)]
    assert created == [Create(3, points[2])]
    # An invalid point is skipped, not repeated: the next point comes.
    created = [d for d in searcher.on_exit(1, ExitReason.INVALID_HP) if isinstance(d, Create)]
    assert created == [Create(4, points[3])]


def test_grid_runs_every_point_once() -> None:
    searcher = make_searcher(spec("grid", max_concurrent_trials=0), SPACE, 0)
    decisions = searcher.start()
    assert creates(decisions) == list(range(1, 7))
    for trial in range(1, 6):
        assert searcher.on_validation(trial, 100, 0.1) == [Stop(trial)]
    assert searcher.on_validation(6, 100, 0.1) == [Stop(6), Shutdown()]


def test_missing_settings_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="max_trials"):
        make_searcher(spec(max_trials=None), SPACE, 0)
    with pytest.raises(SpecError, match="max_length"):
        make_searcher(spec("single", max_length=0), SPACE, 0)
    with pytest.raises(SpecError, match="unknown searcher"):
        make_searcher(spec("bayes"), SPACE, 0)


def test_without_max_length_the_trial_decides_and_its_exit_closes_it() -> None:
    """Determined 0.38: no report closes the trial; its exit 0 does, and restores keep that."""
    searcher = make_searcher(spec("single", max_length=None), SPACE, 0)
    (_, train) = searcher.start()
    assert train == Train(1, OPEN_LENGTH, report_at=(OPEN_LENGTH,))
    assert searcher.on_validation(1, 7, 0.3) == []
    restored = restore_searcher(spec("single", max_length=None), SPACE, searcher.snapshot())
    assert restored.on_exit(1, ExitReason.COMPLETED) == [Shutdown()]


def test_restore_rejects_another_searchers_snapshot() -> None:
    snapshot = make_searcher(spec("grid"), SPACE, 0).snapshot()
    with pytest.raises(ValueError, match="random"):
        Random.restore(spec().config(), SPACE, snapshot)


# -- snapshot/restore: identical future decisions, whatever the event stream -----------------

EVENTS = st.lists(st.tuples(st.integers(1, 12), st.sampled_from(["report", "mid", "exit", "invalid"]),
                            st.floats(0.0, 1.0)), max_size=40)


def drive(searcher: Any, event: tuple[int, str, float]) -> list[Decision]:
    trial, kind, metric = event
    if kind == "report":
        return list(searcher.on_validation(trial, 100, metric))
    if kind == "mid":
        return list(searcher.on_validation(trial, 40, metric))
    reason = ExitReason.ERRORED if kind == "exit" else ExitReason.INVALID_HP
    return list(searcher.on_exit(trial, reason))


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["random", "grid", "single"]), events=EVENTS,
       cut=st.integers(0, 40), concurrency=st.integers(0, 4))
def test_snapshot_restore_replays_identically(name: str, events: list[tuple[int, str, float]],
                                              cut: int, concurrency: int) -> None:
    searcher_spec = spec(name, max_concurrent_trials=concurrency)
    original = make_searcher(searcher_spec, SPACE, 42)
    original.start()
    for event in events[:cut]:
        drive(original, event)
    snapshot = json.loads(json.dumps(original.snapshot()))
    restored = restore_searcher(searcher_spec, SPACE, snapshot)
    for event in events[cut:]:
        assert drive(restored, event) == drive(original, event)
        assert restored.done == original.done
        assert restored.progress() == original.progress()


@settings(max_examples=40, deadline=None)
@given(events=EVENTS, concurrency=st.integers(0, 4))
def test_budget_and_single_shutdown(events: list[tuple[int, str, float]], concurrency: int) -> None:
    searcher = Random(spec(max_trials=5, max_concurrent_trials=concurrency).config(), SPACE,
                      random.Random(1))
    decisions = searcher.start()
    for event in events:
        decisions += drive(searcher, event)
    created = creates(decisions)
    assert created == list(range(1, len(created) + 1))
    assert searcher.created == len(created)
    assert searcher.created - searcher.uncounted <= 5     # invalid-hp trials use no budget
    assert sum(isinstance(d, Shutdown) for d in decisions) == (1 if searcher.done else 0)
    assert 0.0 <= searcher.progress() <= 1.0
