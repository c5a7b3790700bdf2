"""A second held-out family for bench/searcher_quality.py: the multi-fidelity Branin.

Branin on x1 in [-5, 10], x2 in [0, 15] (mapped from the unit square), with a fidelity z in
1..100 (the trial's length) as Kandasamy et al. defined it ("Multi-fidelity Bayesian
Optimisation with Continuous Approximations", ICML 2017): with s = log(z) / log(100) (0 at
the lowest fidelity, 1 at the top), b = 5.1 / (4 pi^2) - 0.01 (1 - s), c = 5 / pi -
0.1 (1 - s) and t = 1 / (8 pi) + 0.05 (1 - s). `branin2_noisy` adds a non-negative noise
|N(0, 1)| * 5 * (1 - s), fixed per point and fidelity, as mf_functions.py does for
Hartmann. At z = 100 both are the plain Branin function, whose minimum is 0.397887.

Added after the TPE sampler's constants were chosen, and never used to choose them: held
out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mf_functions import Function, _noise, fidelity_share

BRANIN_MINIMUM = 0.397887357729738
NOISE = 5.0


def branin(noise: float) -> Function:
    def value(x: Sequence[float], z: int) -> float:
        low = 1.0 - fidelity_share(z)
        x1, x2 = -5.0 + 15.0 * x[0], 15.0 * x[1]
        b = 5.1 / (4 * math.pi ** 2) - 0.01 * low
        c = 5.0 / math.pi - 0.1 * low
        t = 1.0 / (8 * math.pi) + 0.05 * low
        plain = (x2 - b * x1 ** 2 + c * x1 - 6.0) ** 2 + 10.0 * (1.0 - t) * math.cos(x1) + 10.0
        return plain + _noise(x, z) * noise * low

    return value


# name -> (dimensions, function, the minimum of the noise-free top fidelity, held out)
FUNCTIONS: dict[str, tuple[int, Function, float, bool]] = {
    "branin2": (2, branin(0.0), BRANIN_MINIMUM, True),
    "branin2_noisy": (2, branin(NOISE), BRANIN_MINIMUM, True),
}
