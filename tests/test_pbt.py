"""Population-based training (Determined 0.17 semantics)."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cade_cli.search.searchers import make_searcher, restore_searcher
from cade_cli.search.searchers.base import (
    Create,
    Decision,
    ExitReason,
    Shutdown,
    Stop,
    Train,
)
from cade_cli.search.searchers.pbt import Pbt
from cade_cli.search.space import Double, Int, Nested, explore, sample
from cade_cli.spec.experiment import SearcherSpec

SPACE = Nested((("lr", Double(0.001, 1.0)), ("width", Int(8, 512))))


def pbt_spec(**fields: Any) -> SearcherSpec:
    values: dict[str, Any] = {"population_size": 4, "num_rounds": 3, "length_per_round": 10,
                                  "truncate_fraction": 0.25, "resample_probability": 0.2,
                                  "perturb_factor": 0.2}
    values.update(fields)
    return SearcherSpec(name="pbt", metric="loss", **values)


def test_start_creates_the_population() -> None:
    searcher = make_searcher(pbt_spec(), SPACE, 9)
    assert isinstance(searcher, Pbt)
    rng = random.Random(9)
    expected: list[Decision] = []
    for trial in range(1, 5):
        expected += [Create(trial, sample(SPACE, rng)), Train(trial, 10, (10,))]
    assert searcher.start() == expected


def test_a_round_truncates_the_worst_and_copies_the_best() -> None:
    searcher = make_searcher(pbt_spec(), SPACE, 9)
    start = searcher.start()
    params = {d.trial: d.params for d in start if isinstance(d, Create)}
    assert searcher.on_validation(1, 5, 0.1) == []            # before the round's length
    assert searcher.on_validation(1, 10, 0.4) == []
    assert searcher.on_validation(2, 10, 0.1) == []
    assert searcher.on_validation(3, 10, 0.9) == []
    assert searcher.on_validation(3, 10, 0.0) == []           # a second report is ignored
    decisions = searcher.on_validation(4, 10, 0.4)            # ties: trial 1 before 4
    rng = random.Random(9)
    for _ in range(4):
        sample(SPACE, rng)
    child = explore(SPACE, params[2], rng, 0.2, 0.2)
    assert decisions == [
        Stop(3),
        Create(5, child, parent=2), Train(5, 20, (20,)),
        Train(1, 20, (20,)), Train(2, 20, (20,)), Train(4, 20, (20,)),
    ]
    assert searcher.progress() == 1 / 3


def test_last_round_closes_everyone_once() -> None:
    searcher = make_searcher(pbt_spec(num_rounds=1), SPACE, 0)
    searcher.start()
    for trial in (1, 2, 3):
        assert searcher.on_validation(trial, 10, 0.5) == []
    assert searcher.on_validation(4, 10, 0.5) == [Stop(1), Stop(2), Stop(3), Stop(4), Shutdown()]
    assert searcher.done and searcher.progress() == 1.0
    assert searcher.on_validation(4, 10, 0.5) == []
    assert searcher.on_exit(1, ExitReason.ERRORED) == []


def test_children_start_at_the_parents_length() -> None:
    searcher = make_searcher(pbt_spec(num_rounds=4), SPACE, 0)
    searcher.start()
    for trial, metric in ((1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)):
        searcher.on_validation(trial, 10, metric)
    # Round 2: members 1, 2, 3, 5 train to 20. Trial 5 (child of 1) is the best.
    for trial, metric in ((1, 0.3), (2, 0.2), (3, 0.4)):
        assert searcher.on_validation(trial, 20, metric) == []
    decisions = searcher.on_validation(5, 20, 0.05)
    assert decisions[0] == Stop(3)
    assert decisions[1].parent == 5 and decisions[1].trial == 6  # type: ignore[union-attr]
    assert decisions[2] == Train(6, 30, (30,))
    assert decisions[3:] == [Train(1, 30, (30,)), Train(2, 30, (30,)), Train(5, 30, (30,))]


def test_larger_is_better_flips_the_ranking() -> None:
    searcher = make_searcher(pbt_spec(smaller_is_better=False), SPACE, 0)
    searcher.start()
    for trial, metric in ((1, 0.1), (2, 0.9), (3, 0.5)):
        searcher.on_validation(trial, 10, metric)
    decisions = searcher.on_validation(4, 10, 0.6)
    assert decisions[0] == Stop(1)
    assert decisions[1].parent == 2  # type: ignore[union-attr]


def test_an_exited_member_counts_as_worst_and_is_replaced() -> None:
    searcher = make_searcher(pbt_spec(), SPACE, 0)
    searcher.start()
    assert searcher.on_exit(2, ExitReason.ERRORED) == []
    for trial in (1, 3):
        searcher.on_validation(trial, 10, 0.5)
    decisions = searcher.on_validation(4, 10, 0.1)
    assert Stop(2) not in decisions                           # it already ended
    assert [d.parent for d in decisions if isinstance(d, Create)] == [4]
    assert [d.trial for d in decisions if isinstance(d, Train)] == [5, 1, 3, 4]


def test_an_exited_member_that_survives_stays_as_worst() -> None:
    searcher = make_searcher(pbt_spec(num_rounds=2, truncate_fraction=0.0), SPACE, 0)
    searcher.start()
    searcher.on_exit(4, ExitReason.ERRORED)
    for trial in (1, 2):
        searcher.on_validation(trial, 10, 0.5)
    decisions = searcher.on_validation(3, 10, 0.5)
    assert decisions == [Train(1, 20, (20,)), Train(2, 20, (20,)), Train(3, 20, (20,))]
    for trial in (1, 2):
        searcher.on_validation(trial, 20, 0.5)
    # Round 2 ends without trial 4 reporting again.
    assert searcher.on_validation(3, 20, 0.5)[-1] == Shutdown()


def test_everyone_exiting_shuts_down() -> None:
    searcher = make_searcher(pbt_spec(), SPACE, 0)
    searcher.start()
    decisions: list[Decision] = []
    for trial in (1, 2, 3, 4):
        decisions += searcher.on_exit(trial, ExitReason.ERRORED)
    assert decisions == [Shutdown()]
    assert searcher.done


def test_invalid_initial_member_is_replaced_with_a_fresh_one() -> None:
    searcher = make_searcher(pbt_spec(), SPACE, 0)
    searcher.start()
    decisions = searcher.on_exit(3, ExitReason.INVALID_HP)
    assert [type(d) for d in decisions] == [Create, Train]
    assert decisions[0].trial == 5 and decisions[0].parent is None  # type: ignore[union-attr]
    assert decisions[1] == Train(5, 10, (10,))
    for trial in (1, 2, 4):
        assert searcher.on_validation(trial, 10, 0.5) == []
    assert searcher.on_validation(5, 10, 0.5) != []


def test_nan_metric_ranks_worst() -> None:
    searcher = make_searcher(pbt_spec(), SPACE, 0)
    searcher.start()
    for trial, metric in ((1, float("nan")), (2, 0.9), (3, 0.5)):
        searcher.on_validation(trial, 10, metric)
    assert searcher.on_validation(4, 10, 0.6)[0] == Stop(1)


EVENTS = st.lists(st.tuples(st.integers(1, 14), st.sampled_from(["report", "exit", "invalid"]),
                            st.sampled_from([0.1, 0.2, 0.3, float("nan")])), max_size=60)


def drive(searcher: Any, lengths: dict[int, int], event: tuple[int, str, float]) -> list[Decision]:
    trial, kind, metric = event
    if kind == "report":
        decisions = list(searcher.on_validation(trial, lengths.get(trial, 0), metric))
    else:
        reason = ExitReason.ERRORED if kind == "exit" else ExitReason.INVALID_HP
        decisions = list(searcher.on_exit(trial, reason))
    for decision in decisions:
        if isinstance(decision, Train):
            lengths[decision.trial] = decision.length
    return decisions


@settings(max_examples=50, deadline=None)
@given(events=EVENTS, cut=st.integers(0, 60))
def test_snapshot_restore_replays_identically(events: list[tuple[int, str, float]],
                                              cut: int) -> None:
    searcher_spec = pbt_spec(population_size=5, truncate_fraction=0.4)
    original = make_searcher(searcher_spec, SPACE, 3)
    lengths: dict[int, int] = {}
    all_decisions = original.start()
    for decision in all_decisions:
        if isinstance(decision, Train):
            lengths[decision.trial] = decision.length
    for event in events[:cut]:
        all_decisions += drive(original, lengths, event)
    restored = restore_searcher(searcher_spec, SPACE, json.loads(json.dumps(original.snapshot())))
    for event in events[cut:]:
        twin = dict(lengths)
        got = drive(restored, twin, event)
        assert got == drive(original, lengths, event)
        all_decisions += got
        assert restored.progress() == original.progress()
    assert sum(isinstance(d, Shutdown) for d in all_decisions) == (1 if original.done else 0)
    created = [d.trial for d in all_decisions if isinstance(d, Create)]
    assert created == list(range(1, len(created) + 1))
