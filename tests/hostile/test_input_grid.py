"""Grids are counted before they are built: a grid of 10^9 points is refused at load with
its size and the limit, and no grid is ever materialised (the grid searcher computes each
trial's point from its index)."""

from __future__ import annotations

import itertools
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from cade_cli.cli import cli
from cade_cli.errors import SpecError
from cade_cli.search.searchers import make_searcher
from cade_cli.search.searchers.base import Create
from cade_cli.search.space import (
    MAX_GRID_POINTS,
    Categorical,
    Const,
    Double,
    Int,
    Log,
    Nested,
    grid_axis,
    grid_point,
    grid_size,
)
from cade_cli.spec.experiment import parse_spec

GRID_SPEC = """\
name: exp
entrypoint: python3 train.py
searcher:
  name: grid
  metric: loss
  max_length: 100
hyperparameters:
"""
BILLION = """\
  a: {type: double, minval: 0, maxval: 1, count: 1000}
  b: {type: int, minval: 0, maxval: 100000, count: 1000}
  c: {type: log, base: 10, minval: -3, maxval: 0, count: 1000}
"""


def test_a_billion_point_grid_is_refused_by_its_count(tmp_path: Path) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(GRID_SPEC + BILLION, encoding="utf-8")
    expected = (f"Error: {spec}:7: hyperparameters: expected a grid of at most 1,000,000 points (one trial "
                f"each), found 1,000,000,000 points (the product of the counts and categories)\n")
    tracemalloc.start()
    try:
        for args in (["submit", str(spec), "--dry-run", "--scheduler", "local"], ["preview", str(spec)]):
            result = CliRunner().invoke(cli, args)
            assert (result.exit_code, result.output) == (2, expected)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20  # the 1.9 GB of a built grid never happens


def test_an_astronomical_count_is_refused_too() -> None:
    text = GRID_SPEC + "  a: {type: double, minval: 0, maxval: 1, count: " + "9" * 40 + "}\n"
    with pytest.raises(SpecError, match=r"found about 10\^39 points"):
        parse_spec(text, "g.yaml")


def test_the_largest_allowed_grid_starts_at_once() -> None:
    text = GRID_SPEC + ("  a: {type: double, minval: 0, maxval: 1, count: 1000}\n"
                        "  b: {type: categorical, vals: [x, y, z, w, v]}\n"
                        "  c: {type: int, minval: 1, maxval: 200, count: 200}\n")
    spec = parse_spec(text, "g.yaml")
    assert grid_size(spec.hyperparameters) == MAX_GRID_POINTS
    tracemalloc.start()
    try:
        searcher = make_searcher(spec.searcher, spec.hyperparameters, 0)
        creates = [d for d in searcher.start() if isinstance(d, Create)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20
    assert [c.params for c in creates[:2]] == [{"a": 0.0, "b": "x", "c": 1}, {"a": 0.0, "b": "x", "c": 2}]


def _space() -> Nested:
    inner = Nested((("k", Categorical(("p", "q"))), ("m", Const([1, 2]))))
    return Nested((("a", Int(1, 10, 4)), ("b", Log(-3, 0, 10, 3)), ("c", Double(0, 1, 2)),
                   ("d", Categorical(("x", [1], {"y": 2}))), ("e", inner)))


def test_points_by_index_are_the_cartesian_product_in_order() -> None:
    space = _space()
    names = [name for name, _ in space.items]
    product = [dict(zip(names, values))
               for values in itertools.product(*(grid_axis(hp) for _, hp in space.items))]
    assert grid_size(space) == len(product) == 4 * 3 * 2 * 3 * 2
    assert [grid_point(space, i) for i in range(len(product))] == product


def test_points_are_fresh_copies() -> None:
    space = _space()
    first = grid_point(space, 0)
    first["e"]["m"].append(3)
    assert grid_point(space, 0)["e"]["m"] == [1, 2]
    assert space.items[4][1].items[1][1] == Const([1, 2])
