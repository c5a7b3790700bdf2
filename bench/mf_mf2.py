"""A third held-out family for bench/searcher_quality.py, from a package cade does not hold:
the bi-fidelity functions of `mf2` (van Rijn and Schmitt, "MF2: A Collection of
Multi-Fidelity Benchmark Functions in Python", JOSS 2020).

Each mf2 function has a high and a low fidelity, defined by its authors, on its own box.
Here the box is mapped from the unit cube and the fidelity z in 1..100 (the trial's length)
moves from the low to the high one on the same log scale as the other families:
f(x, z) = s * high(x) + (1 - s) * low(x), with s = log(z) / log(100). Nothing is added:
how far the low fidelity misleads is the authors' (mf2's Branin pair, whose low fidelity
ranks the best tenth of points slightly in reverse, misleads most; the Park pairs hardly).
Every function is minimised; the minimum of the high fidelity is searched for once per
process (a seeded uniform sample of 100,000 points, then L-BFGS-B from the best ten and from
the authors' optimum where they give one): for several functions mf2 gives no optimum, or
one of the other direction (Currin's is its maximum).

Chosen as a whole, before cade was ever measured on it: every bi-fidelity function of mf2
in 2 to 8 dimensions, and the adjustable Branin and Hartmann 3 pairs at the middle of their
parameter range (a = 0.5). Left out: the 1-D Forrester pair, the adjustable Paciorek pair
(sin(1/(x1 x2)), unbounded oscillation) and the 10-D adjustable Trid pair (no correlation
between its fidelities). Never used to choose anything in cade: held out.

Needs `mf2` (it needs numpy), scipy for the minimum search, and a setuptools before 81 (mf2
imports `pkg_resources`):
`pip install --no-deps --target DIR mf2 'setuptools<81'`, DIR on PYTHONPATH.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from mf_functions import Function, fidelity_share, show_family

FAMILY = "mf2"
NEEDS = "the mf2 package"
# name -> how to make the mf2 function (names fixed here, so they can be listed without mf2)
MAKERS: dict[str, Callable[[Any], Any]] = {
    "mf2_bohachevsky": lambda mf2: mf2.bohachevsky,
    "mf2_booth": lambda mf2: mf2.booth,
    "mf2_branin": lambda mf2: mf2.branin,
    "mf2_currin": lambda mf2: mf2.currin,
    "mf2_himmelblau": lambda mf2: mf2.himmelblau,
    "mf2_six_hump_camelback": lambda mf2: mf2.six_hump_camelback,
    "mf2_park91a": lambda mf2: mf2.park91a,
    "mf2_park91b": lambda mf2: mf2.park91b,
    "mf2_hartmann6": lambda mf2: mf2.hartmann6,
    "mf2_borehole": lambda mf2: mf2.borehole,
    "mf2_adjustable_branin": lambda mf2: mf2.adjustable.branin(0.5),
    "mf2_adjustable_hartmann3": lambda mf2: mf2.adjustable.hartmann3(0.5),
}
INSTALL = "pip install --no-deps --target DIR mf2 'setuptools<81', DIR on PYTHONPATH"
SAMPLES = 100_000
STARTS = 10


def available() -> bool:
    try:
        _package()
    except ImportError:
        return False
    return True


def _package() -> Any:
    with warnings.catch_warnings():   # mf2 imports pkg_resources, which warns that it is old
        warnings.simplefilter("ignore")
        import mf2
    return mf2


@functools.cache
def _function(name: str) -> Any:
    return MAKERS[name](_package())


def function(name: str) -> Function:
    """The family's f(x, z) for `name`, x on the unit cube."""
    mf = _function(name)
    low_bound, span = mf.l_bound, mf.u_bound - mf.l_bound

    def value(x: Sequence[float], z: int) -> float:
        point = (low_bound + span * list(x)).reshape(1, -1)
        s = fidelity_share(z)
        high = float(mf.high(point)[0])
        return high if s == 1.0 else s * high + (1.0 - s) * float(mf.low(point)[0])

    return value


@functools.cache
def minimum(name: str) -> float:
    """The smallest high-fidelity value found (see the module docstring)."""
    import numpy as np
    from scipy.optimize import minimize

    mf = _function(name)
    low_bound, span = mf.l_bound, mf.u_bound - mf.l_bound
    unit = np.random.default_rng(0).random((SAMPLES, mf.ndim))

    def high(u: Any) -> float:
        return float(mf.high((low_bound + span * np.clip(u, 0.0, 1.0)).reshape(1, -1))[0])

    values = mf.high(low_bound + span * unit)
    starts = list(unit[np.argsort(values)[:STARTS]])
    if mf.x_opt is not None:
        starts.append(np.clip((mf.x_opt - low_bound) / span, 0.0, 1.0))
    best = float(values.min())
    for start in starts:
        found = minimize(high, start, method="L-BFGS-B", bounds=[(0.0, 1.0)] * mf.ndim)
        best = min(best, high(found.x), high(start))
    return best


def functions() -> dict[str, tuple[int, Function, float, bool]]:
    """name -> (dimensions, function, minimum, held out), as the other families list them."""
    return {name: (_function(name).ndim, function(name), minimum(name), True)
            for name in MAKERS}


def main(argv: list[str] | None = None) -> int:
    """The mf2 family at a glance: each function's dimensions and minimum."""
    return show_family(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
