"""Space functions: sampling, grid axes, PBT explore, flatten."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cade_cli.errors import SpecError
from cade_cli.search.space import (
    Categorical,
    Const,
    Double,
    Int,
    Log,
    Nested,
    explore,
    flatten,
    grid,
    grid_axis,
    grid_size,
    round_half_away,
    sample,
)

SPACE = Nested((
    ("dropout", Double(0.0, 0.5, count=3)),
    ("layers", Int(1, 4, count=2)),
    ("lr", Log(-4.0, -1.0, 10.0, count=4)),
    ("model", Nested((("act", Categorical(("relu", "gelu"))), ("width", Const(128))))),
    ("optimizer", Categorical(("sgd", "adam", "adamw"))),
))


def test_sample_is_deterministic_and_in_bounds() -> None:
    first = sample(SPACE, random.Random(7))
    assert first == sample(SPACE, random.Random(7))
    assert list(first) == ["dropout", "layers", "lr", "model", "optimizer"]
    assert 0.0 <= first["dropout"] <= 0.5
    assert first["layers"] in (1, 2, 3, 4)
    assert 1e-4 <= first["lr"] <= 1e-1
    assert first["model"]["width"] == 128
    assert first["model"]["act"] in ("relu", "gelu")
    assert first["optimizer"] in ("sgd", "adam", "adamw")


def test_sample_order_does_not_depend_on_item_order() -> None:
    shuffled = Nested(tuple(reversed(SPACE.items)))
    assert sample(shuffled, random.Random(3)) == sample(SPACE, random.Random(3))


def test_sample_uses_the_rng_in_a_fixed_order() -> None:
    # int uniform inclusive, then double: exactly these calls on the passed RNG.
    space = Nested((("a", Int(0, 10)), ("b", Double(1.0, 2.0))))
    rng = random.Random(11)
    expected = {"a": rng.randint(0, 10), "b": rng.uniform(1.0, 2.0)}
    assert sample(space, random.Random(11)) == expected


def test_int_sampling_is_inclusive() -> None:
    space = Nested((("n", Int(0, 2)),))
    rng = random.Random(0)
    seen = {sample(space, rng)["n"] for _ in range(200)}
    assert seen == {0, 1, 2}


def test_categorical_values_are_copies() -> None:
    space = Nested((("shape", Categorical(([1, 2],))),))
    value = sample(space, random.Random(0))["shape"]
    value.append(3)
    assert space.items[0][1] == Categorical(([1, 2],))


@pytest.mark.parametrize(("hp", "expected"), [
    (Int(0, 4, count=5), [0, 1, 2, 3, 4]),
    (Int(-4, -2, count=3), [-4, -3, -2]),
    (Int(0, 4, count=100), [0, 1, 2, 3, 4]),          # count clamped to the range size
    (Int(0, 3, count=1), [2]),                        # 1.5 rounds away from zero
    (Int(-3, 0, count=1), [-2]),                      # -1.5 rounds away from zero
    (Int(0, 10, count=4), [0, 3, 7, 10]),
    (Double(0.0, 1.0, count=3), [0.0, 0.5, 1.0]),
    (Double(0.0, 1.0, count=1), [0.5]),
    (Log(-3.0, -1.0, 10.0, count=3), [10.0 ** -3, 10.0 ** -2, 10.0 ** -1]),
    (Log(0.0, 2.0, 2.0, count=1), [2.0]),
    (Categorical(("a", "b")), ["a", "b"]),
    (Const("x"), ["x"]),
])
def test_grid_axis(hp: Int | Double | Log | Categorical | Const, expected: list[object]) -> None:
    assert grid_axis(hp) == pytest.approx(expected)


def test_round_half_away_from_zero() -> None:
    assert [round_half_away(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 2.4)] == [1, 2, 3, -1, -3, 2]


def test_grid_is_a_product_with_the_first_name_slowest() -> None:
    space = Nested((("b", Categorical((1, 2))), ("a", Categorical(("x", "y")))))
    assert grid(space) == [{"a": "x", "b": 1}, {"a": "x", "b": 2},
                           {"a": "y", "b": 1}, {"a": "y", "b": 2}]


def test_grid_with_nested_and_size() -> None:
    points = grid(SPACE)
    assert len(points) == grid_size(SPACE) == 3 * 2 * 4 * 2 * 3
    assert points[0] == {"dropout": 0.0, "layers": 1, "lr": pytest.approx(1e-4),
                         "model": {"act": "relu", "width": 128}, "optimizer": "sgd"}
    assert points[1]["optimizer"] == "adam"
    assert points[3]["model"]["act"] == "gelu"


def test_grid_needs_counts() -> None:
    with pytest.raises(SpecError, match="count"):
        grid(Nested((("lr", Double(0.0, 1.0)),)))


def test_empty_space_has_one_point() -> None:
    assert grid(Nested(())) == [{}]
    assert grid_size(Nested(())) == 1


def test_explore_perturbs_and_clamps() -> None:
    space = Nested((("n", Int(1, 10)), ("x", Double(0.0, 1.0)), ("lr", Log(-3.0, -1.0, 10.0)),
                    ("c", Categorical(("a", "b"))), ("k", Const(5))))
    params = {"n": 10, "x": 0.5, "lr": 0.05, "c": "a", "k": 5}
    seen_n, seen_x = set(), set()
    for seed in range(50):
        new = explore(space, params, random.Random(seed), 0.0, 0.5)
        seen_n.add(new["n"])
        seen_x.add(new["x"])
        assert new["c"] == "a" and new["k"] == 5
        assert new["lr"] in (pytest.approx(0.025), pytest.approx(0.075))
    assert seen_n == {5, 10}                  # floor(10*0.5) = 5; ceil(15) clamped to 10
    assert seen_x == {0.25, 0.75}


def test_explore_int_rounding_directions() -> None:
    space = Nested((("n", Int(0, 100)),))
    results = {explore(space, {"n": 7}, random.Random(s), 0.0, 0.2)["n"] for s in range(40)}
    assert results == {5, 9}                  # floor(5.6) and ceil(8.4)


def test_explore_log_clamps_to_base_power_bounds() -> None:
    space = Nested((("lr", Log(-3.0, -1.0, 10.0)),))
    results = {explore(space, {"lr": 0.1}, random.Random(s), 0.0, 0.5)["lr"] for s in range(40)}
    assert sorted(results) == pytest.approx([0.05, 0.1])


def test_explore_resamples_with_probability_one() -> None:
    space = Nested((("x", Double(0.0, 1.0)), ("m", Nested((("y", Int(0, 1000)),)))))
    # Per leaf in sorted order: one draw for the coin, then the fresh value.
    mirror = random.Random(5)
    mirror.random()
    y = mirror.randint(0, 1000)
    mirror.random()
    x = mirror.uniform(0.0, 1.0)
    new = explore(space, {"x": 0.5, "m": {"y": 3}}, random.Random(5), 1.0, 0.2)
    assert new == {"m": {"y": y}, "x": x}


def test_explore_is_deterministic() -> None:
    params = sample(SPACE, random.Random(1))
    assert explore(SPACE, params, random.Random(2), 0.3, 0.2) == \
        explore(SPACE, params, random.Random(2), 0.3, 0.2)


def test_flatten() -> None:
    assert flatten({"b": 1, "a": {"y": 2, "x": {"z": 3}}}) == {"a.x.z": 3, "a.y": 2, "b": 1}
    assert list(flatten({"b": 1, "a": {"y": 2, "x": 1}})) == ["a.x", "a.y", "b"]


@settings(max_examples=60, deadline=None)
@given(low=st.integers(-50, 50), span=st.integers(1, 60), count=st.integers(1, 80))
def test_int_axis_properties(low: int, span: int, count: int) -> None:
    axis = grid_axis(Int(low, low + span, count=count))
    assert len(axis) == min(count, span + 1)
    assert all(low <= v <= low + span for v in axis)
    assert axis == sorted(axis)
    if count > 1:
        assert axis[0] == low and axis[-1] == low + span
        assert len(set(axis)) == len(axis)
