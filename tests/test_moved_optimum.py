"""The moved-optimum test (cade_cli/search/moved_optimum.py) and how the TPE sampler's
choice of model rung uses it."""

from __future__ import annotations

import random

import pytest

from cade_cli.search import moved_optimum
from cade_cli.search.moved_optimum import (
    best_share_correlation,
    f_survival,
    optimum_moved,
    regularized_beta,
    residual_squares,
)
from cade_cli.search.rank_correlation import spearman
from cade_cli.search.samplers.tpe import TpeSampler
from cade_cli.search.searchers.base import ExitReason
from cade_cli.search.space import Double, Nested

# scipy.stats.f.sf at these points (scipy is not a dependency; the values are pinned here).
F_TAILS = [((0.5, 1, 3), 0.530477770932957), ((3.2, 2, 10), 0.08429091335387388),
           ((10.0, 6, 20), 3.7610530853271484e-05), ((1.0, 1, 1), 0.5),
           ((4.0, 3, 40), 0.013958694505081342), ((0.01, 5, 7), 0.9999545568150169),
           ((50.0, 2, 3), 0.004970797199900164)]


@pytest.mark.parametrize(("args", "expected"), F_TAILS)
def test_the_f_tail_matches_scipy(args: tuple[float, int, int], expected: float) -> None:
    assert f_survival(*args) == pytest.approx(expected, rel=1e-12)


def test_the_incomplete_beta_at_its_ends_and_by_symmetry() -> None:
    assert regularized_beta(2.0, 3.0, 0.0) == 0.0
    assert regularized_beta(2.0, 3.0, 1.0) == 1.0
    assert f_survival(0.0, 2, 5) == 1.0
    # I_x(a, b) = 1 - I_(1-x)(b, a), evaluated on opposite sides of the switch point.
    assert regularized_beta(2.5, 0.5, 0.3) == pytest.approx(0.018927124071945658, rel=1e-12)
    assert regularized_beta(0.5, 2.5, 0.7) == pytest.approx(1 - 0.018927124071945658, rel=1e-12)
    # I_x(1, 1) is x itself.
    assert regularized_beta(1.0, 1.0, 0.37) == pytest.approx(0.37)


def test_least_squares_sums_of_squares() -> None:
    xs = [0.0, 1.0, 2.0, 3.0, 4.0]
    plane = [3.0 - 2.0 * x for x in xs]
    total, residual = residual_squares([xs], plane)
    assert total == pytest.approx(40.0)
    assert residual == pytest.approx(0.0, abs=1e-20)
    bumpy = [0.0, 1.0, 0.0, 1.0, 0.0]   # no slope: the fit explains nothing
    assert residual_squares([xs], bumpy) == pytest.approx((1.2, 1.2))
    # A column the others already span adds nothing (skipped, as a minimum-norm fit would).
    twice = [2 * x for x in xs]
    assert residual_squares([xs, twice], bumpy) == pytest.approx(residual_squares([xs], bumpy))
    quadratic = [x * x for x in xs]
    assert residual_squares([xs, quadratic], quadratic)[1] == pytest.approx(0.0, abs=1e-20)


def two_rungs(short: object, long: object, trials: int = 40,
              seed: int = 0) -> tuple[dict[int, dict[int, float]], dict[int, list[float]]]:
    """Results at lengths 3 and 27 for `trials` points of [0, 1]^2: `short(x, rng)`,
    `long(x, rng)`."""
    rng = random.Random(seed)
    points = {trial: [rng.random(), rng.random()] for trial in range(1, trials + 1)}
    seen: dict[int, dict[int, float]] = {
        3: {t: short(x, rng) for t, x in points.items()},    # type: ignore[operator]
        27: {t: long(x, rng) for t, x in points.items()}}    # type: ignore[operator]
    return seen, points


def bowl(x: list[float], centre: float) -> float:
    return (x[0] - centre) ** 2 + (x[1] - 0.5) ** 2


def test_a_moved_optimum_is_told_from_noise_and_from_an_offset() -> None:
    moved = two_rungs(lambda x, r: bowl(x, 0.3), lambda x, r: bowl(x, 0.6))
    assert optimum_moved(*moved[:1], 3, moved[1])
    offset = two_rungs(lambda x, r: bowl(x, 0.6) + 0.3, lambda x, r: bowl(x, 0.6))
    assert not optimum_moved(offset[0], 3, offset[1])
    noisy = two_rungs(lambda x, r: bowl(x, 0.6), lambda x, r: bowl(x, 0.6) + r.gauss(0, 0.05))
    assert not optimum_moved(noisy[0], 3, noisy[1])
    # Only a shorter length is compared with the reference, and only with enough pairs.
    assert not optimum_moved(moved[0], 27, moved[1])
    few = two_rungs(lambda x, r: bowl(x, 0.3), lambda x, r: bowl(x, 0.6), trials=4)
    assert not optimum_moved(few[0], 3, few[1])


def flatters_the_middle_choice(seed: int) -> tuple[dict[int, dict[int, float]], dict[int, list[float]]]:
    """A number and a categorical of three values (its index): the long rung has one
    optimum for all three, the short one flatters the middle value by 0.1."""
    rng = random.Random(seed)
    points = {trial: [rng.random(), float(rng.randrange(3))] for trial in range(1, 61)}
    seen: dict[int, dict[int, float]] = {
        3: {t: (x - 0.6) ** 2 - 0.1 * (choice == 1.0) for t, (x, choice) in points.items()},
        27: {t: (point[0] - 0.6) ** 2 for t, point in points.items()}}
    return seen, points


def test_a_categorical_enters_by_its_values_not_its_index_order() -> None:
    """The short rung flatters the middle of three values: over the indices 0, 1, 2 the
    gap reads 0, 0.1, 0, no slope; between the values it is a clear difference."""
    for seed in range(5):
        seen, points = flatters_the_middle_choice(seed)
        assert optimum_moved(seen, 3, points, choices=[0, 3])
        # The index read as a number misses it (on these seeds; an uneven mix of the
        # three values among the best trials can tilt it into a slope).
        assert not optimum_moved(seen, 3, points, choices=[0, 0])
    # Two values: an indicator is the index itself, and the fit is the same.
    rows = [[0.2, 0.0], [0.4, 1.0], [0.9, 1.0]]
    assert moved_optimum.design_columns(rows, [0, 2]) == [[0.2, 0.4, 0.9], [0.0, 1.0, 1.0]]
    assert moved_optimum.design_columns(rows, [0, 1]) == [[0.2, 0.4, 0.9]]   # one value: no slope


def false_alarms(noise_at_reference: bool) -> float:
    """The share of 200 seeds, same optimum at both lengths, read as a move."""
    def noisy(x: list[float], rng: random.Random) -> float:
        return bowl(x, 0.6) + rng.gauss(0, 0.05)

    def exact(x: list[float], rng: random.Random) -> float:
        return bowl(x, 0.6)

    short, long = (exact, noisy) if noise_at_reference else (noisy, exact)
    runs = [two_rungs(short, long, trials=60, seed=seed) for seed in range(200)]
    return sum(optimum_moved(seen, 3, points) for seen, points in runs) / 200


def test_noise_reads_as_a_move_about_as_often_as_the_level_says() -> None:
    """Noise at the short length: the F-test's level. Noise at the reference, which picks
    the best trials, reads as a move more often: a trial far from the optimum is among the
    best only with a lucky draw there, so the gap leans with the distance (still rare)."""
    assert false_alarms(noise_at_reference=False) == pytest.approx(moved_optimum.ALPHA, abs=0.035)
    assert moved_optimum.ALPHA < false_alarms(noise_at_reference=True) < 4 * moved_optimum.ALPHA


def test_the_best_share_correlation_looks_at_the_best_quarter_only() -> None:
    seen, _ = two_rungs(lambda x, r: bowl(x, 0.3), lambda x, r: bowl(x, 0.6))
    top = seen[27]
    best = sorted(top, key=top.__getitem__)[:10]   # 40 pairs: the best quarter is 10
    expected = spearman([seen[3][t] for t in sorted(best)], [top[t] for t in sorted(best)])
    assert best_share_correlation(seen, 3) == pytest.approx(expected)
    assert best_share_correlation(seen, 27) is None


def moved_at_27() -> TpeSampler:
    """60 results at level 3 (optimum 0.45), the first 16 of them also at 27 (optimum 0.6)."""
    space = Nested((("x", Double(0.0, 1.0)),))
    sampler, rng = TpeSampler(space, (3, 27)), random.Random(0)
    # All proposed before any result: random points, spread over the range.
    xs = {trial: sampler.propose(trial, rng)["x"] for trial in range(1, 61)}
    for trial, x in xs.items():
        sampler.observe(trial, 3, (x - 0.45) ** 2)
        if trial <= 16:
            sampler.observe(trial, 27, (x - 0.6) ** 2)
    return sampler


def test_the_model_leaves_a_short_rung_whose_optimum_moved(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """60 results at level 3 rank the 16 at level 27 with rho 0.57 overall (60 x 0.32 > 16),
    but the best sit elsewhere at 27: the model moves to 27. Without the test it stays."""
    sampler = moved_at_27()
    assert sampler.model_level() == 27
    assert sampler.model_on_long_levels()
    monkeypatch.setattr("cade_cli.search.samplers.tpe.optimum_moved", lambda *args: False)
    assert moved_at_27().model_level() == 3


def test_the_model_level_is_chosen_again_only_when_results_change(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = moved_at_27()
    chosen: list[int | None] = []
    choose = sampler._choose_model_level
    monkeypatch.setattr(sampler, "_choose_model_level", lambda: chosen.append(choose()) or chosen[-1])
    assert sampler.model_level() == sampler.model_level() == 27
    sampler.propose(61, random.Random(1))   # a pending trial: no result changed
    assert chosen == [27]
    sampler.observe(61, 3, 0.5)
    sampler.model_level()
    assert len(chosen) == 2
    sampler.exited(61, ExitReason.CANCELED)   # an exit changes no result
    sampler.model_level()
    assert len(chosen) == 2
    restored = TpeSampler(sampler.space, sampler.levels)
    restored.load_json(sampler.to_json())
    assert restored.model_level() == 27
