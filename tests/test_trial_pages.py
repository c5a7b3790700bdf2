"""Reads whose cost follows what is shown (store/pages.py, views.model.read_page): each
agrees with the same fact computed from every record."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from fixtures_ledger import STATES, TAKEN, all_experiments, write_ledger
from rich.console import Console

from cade_cli.store.ledger import Ledger
from cade_cli.store.pages import TRIAL_ORDERS
from cade_cli.views.frames import render_frame
from cade_cli.views.model import (
    SORTS,
    Snapshot,
    read_experiment,
    read_page,
    sort_trials,
    tally,
)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return write_ledger(tmp_path / "ledger.db", all_experiments())


def test_every_display_order_has_its_sql_order() -> None:
    assert set(SORTS) <= set(TRIAL_ORDERS)
    with pytest.raises(ValueError):
        Ledger.ranked_trials(None, 1, "colour", True)  # type: ignore[arg-type]


@pytest.mark.parametrize("smaller", [True, False])
def test_ranked_trials_are_sort_trials_in_sql(ledger: Ledger, smaller: bool) -> None:
    for exp in ledger.experiments():
        exp = replace(exp, smaller_is_better=smaller)
        data = read_experiment(ledger, exp)
        for sort in SORTS:
            for reverse in (False, True):
                expected = [t.id for t in sort_trials(data, sort, reverse)]
                ranked = ledger.ranked_trials(exp.id, sort, smaller, reverse)
                assert [t.id for t in ranked] == expected, (exp.name, sort, reverse)
                first = ledger.ranked_trials(exp.id, sort, smaller, reverse, limit=3)
                assert [t.id for t in first] == expected[:3]


def test_live_order_puts_running_then_queued_then_the_best_first(ledger: Ledger) -> None:
    exp = ledger.find_experiment("digits-active")
    ranked = ledger.ranked_trials(exp.id, "live", exp.smaller_is_better)
    states = [t.state for t in ranked]
    running, queued = states.count("running"), states.count("queued")
    assert running and queued
    assert set(states[:running]) == {"running"}
    assert set(states[running:running + queued]) == {"queued"}
    rest = [t for t in ranked[running + queued:] if t.best_metric is not None]
    assert [t.best_metric for t in rest] == sorted(t.best_metric for t in rest)  # type: ignore[type-var]


def test_trial_shapes_count_every_trial(ledger: Ledger) -> None:
    for exp in ledger.experiments():
        trials = ledger.trials(exp.id)
        assert sorted(ledger.trial_shapes(exp.id), key=repr) == sorted(tally(trials).shapes, key=repr)
        assert ledger.trial_counts(exp.id) == dict(tally(trials).states())


def frame(snapshot: Snapshot, **options: object) -> str:
    console = Console(record=True, width=140, color_system=None, force_terminal=False)
    console.print(render_frame(snapshot, 140, show_keys=False, **options))  # type: ignore[arg-type]
    return console.export_text()


@pytest.mark.parametrize("state", [s for s in STATES if s != "pending"])
def test_a_page_draws_the_frame_of_the_whole_experiment(ledger: Ledger, state: str) -> None:
    experiments = tuple(ledger.experiments())
    exp = ledger.find_experiment(f"digits-{state}" if state != "canceled" else "digits-random")
    whole = Snapshot(experiments, read_experiment(ledger, exp, kinds=("validation",)), TAKEN)
    for sort in SORTS:
        for reverse in (False, True):
            for rows in (1, 3, 50):
                page = Snapshot(experiments, read_page(ledger, exp, sort, reverse, rows), TAKEN)
                options = {"sort": sort, "reverse": reverse, "max_rows": rows}
                assert frame(page, **options) == frame(whole, **options), (sort, reverse, rows)


def test_a_page_reads_the_trials_it_shows_only(ledger: Ledger) -> None:
    exp = ledger.find_experiment("digits-completed")
    page = read_page(ledger, exp, "id", rows=2)
    assert [t.id for t in page.trials][:2] == [1, 2] and len(page.trials) <= 2 + 5
    assert {m.trial for m in page.metrics} <= {t.id for t in page.trials}
    assert page.tally.total == len(ledger.trials(exp.id)) == 16


def test_only_an_experiment_that_can_run_or_has_a_live_job_needs_a_sync(ledger: Ledger) -> None:
    needs = {e.state: ledger.needs_sync(e) for e in ledger.experiments()}
    assert needs == {"pending": True, "active": True, "paused": True, "completed": False,
                     "errored": False, "canceled": False}
    assert ledger.anything_to_sync() and not ledger.anything_to_sync(only=4)
