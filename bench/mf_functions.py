"""Multi-fidelity test functions for bench/searcher_quality.py, on the unit cube.

Hartmann 3 and 6 with a fidelity z in 1..100 (the trial's length), as multi-fidelity
functions were defined by Kandasamy et al., "Multi-fidelity Bayesian Optimisation with
Continuous Approximations" (ICML 2017, arXiv:1703.06240): the weights alpha of the Hartmann
sum are lowered by `bias * (1 - s)`, where s = log(z) / log(100) is 0 at the lowest fidelity
and 1 at the highest, which flattens and reshapes the function at low fidelities. As in
mf-prior-bench (Mallik et al., "PriorBand", NeurIPS 2023), which made the variants, a
non-negative noise |N(0, 1)| * noise * (1 - s) is added (fixed per point and fidelity), and
(bias, noise) presets grade how well low fidelities rank points: good (2.5, 2.0), moderate
(3.0, 3.0), bad (3.5, 4.0), terrible (4.0, 5.0). At z = 100 every variant is the plain,
noise-free Hartmann function; its minimum is the optimum regret is measured against.

Five more functions, used while the bracket policy was developed (so they are not held out):
- `sphere4`: a bowl whose every fidelity ranks points as the top one does;
- `crossing4`: learning curves that cross: points near the optimum start slowly, so short
  trainings rank them worst;
- `valley3_noisy`: a curved valley (log of 1 + Rosenbrock's function in 3-D) with unbiased
  noise N(0, 1.5) * (1 - s): low fidelities rank points correctly on average, noisily;
- `levy2`: Levy's function in 2-D (many local minima around one global one) on [-10, 10]^2,
  whose optimum sits 0.5 * (1 - s) away at low fidelities, plus 1 / sqrt(z): low fidelities
  rank well far from the optimum and point slightly off near it;
- `drift3`: a bowl in 3-D whose optimum sits 0.3 * (1 - s) away at low fidelities (along the
  diagonal (1, -1, 1)), plus 1 / sqrt(z): low fidelities rank the cube as the top one does,
  but point to the wrong place near the optimum, where a model of the best results looks.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

MAX_FIDELITY = 100

_ALPHA = (1.0, 1.2, 3.0, 3.2)
_A3 = ((3.0, 10.0, 30.0), (0.1, 10.0, 35.0), (3.0, 10.0, 30.0), (0.1, 10.0, 35.0))
_P3 = ((3689, 1170, 2673), (4699, 4387, 7470), (1091, 8732, 5547), (381, 5743, 8828))
_A6 = ((10, 3, 17, 3.5, 1.7, 8), (0.05, 10, 17, 0.1, 8, 14), (3, 3.5, 1.7, 10, 17, 8),
       (17, 8, 0.05, 10, 0.1, 14))
_P6 = ((1312, 1696, 5569, 124, 8283, 5886), (2329, 4135, 8307, 3736, 1004, 9991),
       (2348, 1451, 3522, 2883, 3047, 6650), (4047, 8828, 8732, 5743, 1091, 381))
HARTMANN_MINIMUM = {3: -3.86278214782076, 6: -3.32236801141551}
PRESETS = {"good": (2.5, 2.0), "moderate": (3.0, 3.0), "bad": (3.5, 4.0),
           "terrible": (4.0, 5.0)}

Function = Callable[[Sequence[float], int], float]


def fidelity_share(z: int) -> float:
    """s in [0, 1]: 0 at fidelity 1, 1 at the top fidelity (log scale)."""
    return math.log(max(1, min(z, MAX_FIDELITY))) / math.log(MAX_FIDELITY)


def hartmann(dims: int, bias: float, noise: float) -> Function:
    a, p = (_A3, _P3) if dims == 3 else (_A6, _P6)

    def value(x: Sequence[float], z: int) -> float:
        lowered = bias * (1.0 - fidelity_share(z))
        total = 0.0
        for alpha, row_a, row_p in zip(_ALPHA, a, p):
            inner = sum(ai * (xi - 1e-4 * pi) ** 2 for ai, xi, pi in zip(row_a, x, row_p))
            total -= (alpha - lowered) * math.exp(-inner)
        return total + _noise(x, z) * noise * (1.0 - fidelity_share(z))

    return value


def _noise(x: Sequence[float], z: int) -> float:
    """|N(0, 1)|, the same every time this point is evaluated at this fidelity."""
    return abs(random.Random(hash((tuple(x), z))).gauss(0.0, 1.0))


_CENTRE4 = (0.3, 0.7, 0.45, 0.6)


def _distance4(x: Sequence[float]) -> float:
    return sum((xi - ci) ** 2 for xi, ci in zip(x, _CENTRE4))


def sphere4(x: Sequence[float], z: int) -> float:
    return _distance4(x) + 1.0 / math.sqrt(z)


def crossing4(x: Sequence[float], z: int) -> float:
    distance = _distance4(x)
    return distance + min(1.0 / (0.05 + distance), 20.0) / (1.0 + z)


def valley3_noisy(x: Sequence[float], z: int) -> float:
    u = [4.0 * xi - 2.0 for xi in x]   # the unit cube onto [-2, 2]^3; minimum 0 at u = 1
    rosenbrock = sum(100.0 * (u[i + 1] - u[i] ** 2) ** 2 + (1.0 - u[i]) ** 2 for i in range(2))
    spread = 1.5 * (1.0 - fidelity_share(z))
    return math.log1p(rosenbrock) + random.Random(hash((tuple(x), z, 3))).gauss(0.0, spread)


def levy2(x: Sequence[float], z: int) -> float:
    offset = 0.5 * (1.0 - fidelity_share(z))   # low fidelities: the optimum moved by this
    w = [1.0 + (20.0 * xi - 10.0 + offset - 1.0) / 4.0 for xi in x]
    levy = (math.sin(math.pi * w[0]) ** 2
            + (w[0] - 1.0) ** 2 * (1.0 + 10.0 * math.sin(math.pi * w[0] + 1.0) ** 2)
            + (w[1] - 1.0) ** 2 * (1.0 + math.sin(2.0 * math.pi * w[1]) ** 2))
    return levy + 1.0 / math.sqrt(z)


_CENTRE3 = (0.35, 0.6, 0.5)
_DRIFT3 = tuple(v / math.sqrt(3.0) for v in (1.0, -1.0, 1.0))


def drift3(x: Sequence[float], z: int) -> float:
    moved = 0.3 * (1.0 - fidelity_share(z))   # low fidelities: the optimum moved by this
    return (sum((xi - ci - moved * di) ** 2 for xi, ci, di in zip(x, _CENTRE3, _DRIFT3))
            + 1.0 / math.sqrt(z))


def _crossing_minimum() -> float:
    """crossing4 depends on the distance d alone: its minimum over d, on a fine grid."""
    return min(crossing4((c + math.sqrt(k * 1e-5),) + _CENTRE4[1:], MAX_FIDELITY)
               for c in (_CENTRE4[0],) for k in range(100_000))


# name -> (dimensions, function, the minimum of the noise-free top fidelity, held out)
FUNCTIONS: dict[str, tuple[int, Function, float, bool]] = {
    **{f"mfh{dims}_{preset}": (dims, hartmann(dims, *PRESETS[preset]),
                               HARTMANN_MINIMUM[dims], True)
       for dims in (3, 6) for preset in PRESETS},
    "sphere4": (4, sphere4, 1.0 / math.sqrt(MAX_FIDELITY), False),
    "crossing4": (4, crossing4, _crossing_minimum(), False),
    "valley3_noisy": (3, valley3_noisy, 0.0, False),
    "levy2": (2, levy2, 1.0 / math.sqrt(MAX_FIDELITY), False),   # Levy's minimum is 0
    "drift3": (3, drift3, 1.0 / math.sqrt(MAX_FIDELITY), False),
}


def show_family(family: Any, argv: list[str] | None) -> int:
    """A family from a package cade does not hold (bench/mf_mf2.py, bench/mf_botorch.py) at a
    glance: each function's dimensions and the minimum its module gives."""
    argparse.ArgumentParser(description=show_family.__doc__).parse_args(argv)
    if not family.available():
        print(f"mf_{family.FAMILY}.py: needs {family.NEEDS}: {family.INSTALL}", file=sys.stderr)
        return 1
    for name, (dims, _, lowest, _) in family.functions().items():
        print(f"{name:32s} {dims}-D  minimum {lowest:.6g}")
    return 0
