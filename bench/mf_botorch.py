"""A fourth held-out family for bench/searcher_quality.py, from a package cade does not hold:
the multi-fidelity test functions of BoTorch (`botorch.test_functions.multi_fidelity`).

Each takes its design inputs on its own box and one or two fidelity inputs in [0, 1], 1 being
the target. Here the box is mapped from the unit cube, and every fidelity input is set to the
share s = log(z) / log(100) of the trial's length z in 1..100, the same log scale as the other
families: at z = 100 the function is the target one. How the lower fidelities mislead is
BoTorch's (its Branin and Hartmann move a coefficient, its Rosenbrock shifts the valley);
nothing is added. Every function is minimised, and its minimum is BoTorch's optimal value.

Chosen as a whole, before cade was ever measured on it, after the other families had been
used up by the choices that RESULTS.md records: every function of that module whose
fidelities are continuous, AugmentedBranin (2-D), AugmentedHartmann (6-D) and
AugmentedRosenbrock with 2 and with 4 design inputs (BoTorch's default of 3 inputs leaves it
one design input and no term). Left out: BoreholeMultiFidelity and WingWeightMultiFidelity,
whose fidelity is a choice among a few separate models, not a length. Never used to choose
anything in cade: held out.

Needs BoTorch and what it imports that a cade environment lacks (torch and scipy it has):
`pip install --no-deps --target DIR botorch gpytorch linear_operator pyre_extensions
multipledispatch typing_inspect mypy_extensions jaxtyping wadler_lindig`, DIR on PYTHONPATH.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mf_functions import Function, fidelity_share, show_family

FAMILY = "botorch"
NEEDS = "BoTorch"
# name -> how to make the BoTorch function (names fixed here, so they list without BoTorch)
MAKERS: dict[str, Callable[[Any], Any]] = {
    "botorch_augmented_branin": lambda mf: mf.AugmentedBranin(),
    "botorch_augmented_hartmann": lambda mf: mf.AugmentedHartmann(),
    "botorch_augmented_rosenbrock2": lambda mf: mf.AugmentedRosenbrock(dim=4),
    "botorch_augmented_rosenbrock4": lambda mf: mf.AugmentedRosenbrock(dim=6),
}
FIDELITY_INPUTS = {"botorch_augmented_branin": 1, "botorch_augmented_hartmann": 1,
                   "botorch_augmented_rosenbrock2": 2, "botorch_augmented_rosenbrock4": 2}
INSTALL = ("pip install --no-deps --target DIR botorch gpytorch linear_operator "
           "pyre_extensions multipledispatch typing_inspect mypy_extensions jaxtyping "
           "wadler_lindig, DIR on PYTHONPATH")


def available() -> bool:
    try:
        _module()
    except ImportError:
        return False
    return True


def _module() -> Any:
    from botorch.test_functions import multi_fidelity
    return multi_fidelity


@functools.cache
def _function(name: str) -> Any:
    return MAKERS[name](_module())


def design_dims(name: str) -> int:
    return int(_function(name).dim) - FIDELITY_INPUTS[name]


def function(name: str) -> Function:
    """The family's f(x, z) for `name`, x on the unit cube."""
    import torch

    mf = _function(name)
    dims = design_dims(name)
    box = mf.bounds[:, :dims].to(torch.double)   # row 0 the lower bounds, row 1 the upper
    low, span = box[0], box[1] - box[0]
    fidelities = FIDELITY_INPUTS[name]

    def value(x: Sequence[float], z: int) -> float:
        design = low + span * torch.tensor(list(x), dtype=torch.double)
        share = torch.full((fidelities,), fidelity_share(z), dtype=torch.double)
        return float(mf.evaluate_true(torch.cat([design, share]).unsqueeze(0))[0])

    return value


def minimum(name: str) -> float:
    return float(_function(name).optimal_value)


def functions() -> dict[str, tuple[int, Function, float, bool]]:
    """name -> (dimensions, function, minimum, held out), as the other families list them."""
    return {name: (design_dims(name), function(name), minimum(name), True) for name in MAKERS}


def main(argv: list[str] | None = None) -> int:
    """The BoTorch family at a glance: each function's dimensions and minimum."""
    return show_family(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
