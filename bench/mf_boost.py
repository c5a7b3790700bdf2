"""A seventh held-out family for bench/searcher_quality.py: gradient-boosted trees.

Every earlier training family trains a network, and its length is epochs. Here each
function is scikit-learn's histogram gradient boosting (`HistGradientBoostingClassifier` /
`Regressor`, the LightGBM-style learner most tabular tuning is about), and its length is
boosting rounds: the value at length z is the validation loss after z rounds (z in 1..100).
Nobody shaped how few rounds mislead: high learning rates and big trees lead after a few
rounds and then overfit, low rates start far behind and catch up, and strong regularisation
looks bad early.

- `boost_cancer` (breast cancer: 30 features, 2 classes, 569 samples): log loss.
- `boost_moons` (`make_moons`, 1,000 samples, noise 0.35): log loss.
- `boost_diabetes` (diabetes: 10 features, 442 samples): mean squared error.
- `boost_friedman3` (`make_friedman3`, 1,000 samples, noise 0.1): mean squared error.

The unit cube maps to: learning rate 10^(-2 + 2 x0) (0.01..1), leaves per tree
2^(1 + 6 x1) (2..128), least samples in a leaf 2^(7 x2) (1..128), L2 on the leaf values
10^(-4 + 5 x3) (1e-4..10), and the share of features a split may look at 0.1 + 0.9 x4.
Each dataset is split once (seeded, 70 % training, stratified for classes); a regression
target is standardised on the training part, so its loss reads in units of the target's
variance. The features drawn for the splits come from a seed made from the point, so a
point has one learning curve. A point's model is grown by warm starts to 1, 3, 9, 27, 81 and
100 rounds, in that order whatever lengths are asked for, so its curve does not depend on
the order the lengths were asked in.

The true minimum is not known: regret is measured from the best value seen, as for the
`train` family (bench/mf_train.py).

Chosen as a whole before cade was ever measured on it, after the `train` and `tasks`
families had been: one bundled dataset of each kind that a network family had used
(cancer from `train`, diabetes from `tasks`), here under another learner, and two generated
ones no family had (a non-linear 2-D classification, a regression with a noisy target).
Never used to choose anything in cade: held out.

Needs numpy and scikit-learn 1.4 or later (`max_features`; cade's test extras have both).
Run alone (`OMP_NUM_THREADS=1 PYTHONPATH=. python bench/mf_boost.py [--points 200]`), it
prints how well few rounds rank points on each function. Set OMP_NUM_THREADS=1 when runs
go side by side: the learner's threads only contend.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from mf_functions import MAX_FIDELITY, Function
from mf_train import curve_function, log_loss, rank_report, sklearn_data, split

FAMILY = "boost"
NEEDS = "numpy and scikit-learn 1.4+"
INSTALL = "pip install numpy 'scikit-learn>=1.4' (in cade's test extras)"
# name -> (how to make the data: a loader in sklearn.datasets and its arguments, classes?)
MAKERS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "boost_cancer": ("load_breast_cancer", {}, True),
    "boost_moons": ("make_moons", {"n_samples": 1000, "noise": 0.35, "random_state": 0}, True),
    "boost_diabetes": ("load_diabetes", {}, False),
    "boost_friedman3": ("make_friedman3", {"n_samples": 1000, "noise": 0.1, "random_state": 0},
                        False),
}
# The rounds a model is grown to, in this order whatever is asked (the module docstring).
GROWTH = (1, 3, 9, 27, 81, MAX_FIDELITY)
CACHE_LIMIT = 5_000   # models kept per process (a run touches a few hundred; trees are big)


def available() -> bool:
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError:
        return False
    return "max_features" in HistGradientBoostingRegressor().get_params()


@functools.cache
def _dataset(name: str) -> tuple[Any, Any, Any, Any]:
    """(train x, train y, validation x, validation y); features as made (trees need no
    scaling), a regression target standardised (mf_train.split)."""
    loader, arguments, classes = MAKERS[name]
    return split(*sklearn_data(loader, arguments), classes=classes, scale_features=False)


def settings(x: Sequence[float]) -> dict[str, Any]:
    """The learner's hyperparameters at point x of the unit cube (the module docstring)."""
    return {"learning_rate": 10 ** (-2 + 2 * x[0]),
            "max_leaf_nodes": round(2 ** (1 + 6 * x[1])),
            "min_samples_leaf": round(2 ** (7 * x[2])),
            "l2_regularization": 10 ** (-4 + 5 * x[3]),
            "max_features": 0.1 + 0.9 * x[4]}


class _Boosting:
    """One point's model, grown along GROWTH; the validation loss after each round kept."""

    def __init__(self, name: str, x: Sequence[float]) -> None:
        from sklearn.ensemble import (
            HistGradientBoostingClassifier,
            HistGradientBoostingRegressor,
        )

        self.data = _dataset(name)
        self.classes = MAKERS[name][2]
        learner = HistGradientBoostingClassifier if self.classes else HistGradientBoostingRegressor
        # The seed is read from the last characters of the point's repr: points that share
        # them share the features' draws, which only makes those draws less varied. It is
        # kept as the recorded tables were measured with it (bench/RESULTS.md).
        seed = int.from_bytes(repr(tuple(x)).encode()[-8:], "little") % 2 ** 31
        self.model = learner(max_iter=1, early_stopping=False, warm_start=True,
                             random_state=seed, **settings(x))
        self.curve: list[float] = []

    def advance(self) -> None:
        """Grow to the next length of GROWTH; the curve gains every round up to it."""
        train_x, train_y, valid_x, valid_y = self.data
        self.model.set_params(max_iter=min(t for t in GROWTH if t > len(self.curve)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(train_x, train_y)
        self.curve = [self._loss(predicted, valid_y) for predicted in self._staged(valid_x)]

    def _staged(self, inputs: Any) -> Any:
        if self.classes:
            return self.model.staged_predict_proba(inputs)
        return self.model.staged_predict(inputs)

    def _loss(self, predicted: Any, truth: Any) -> float:
        if self.classes:
            loss = log_loss(predicted, self.model.classes_, truth)
        else:
            loss = float(((predicted - truth) ** 2).mean())
        return loss if math.isfinite(loss) else math.inf


def function(name: str) -> Function:
    """The family's f(x, z) for `name`: the validation loss after z rounds at point x."""
    MAKERS[name]   # an unknown name fails here (KeyError), not at the first value
    return curve_function(functools.partial(_Boosting, name), limit=CACHE_LIMIT)


def functions() -> dict[str, tuple[int, Function, float | None, bool]]:
    """name -> (dimensions, function, minimum (None: not known), held out)."""
    # The dimensions are the hyperparameters `settings` reads: one place says which.
    return {name: (len(settings((0.5,) * 5)), function(name), None, True) for name in MAKERS}


if __name__ == "__main__":
    sys.exit(rank_report(functions(), sys.argv[1:], "rounds", (available, NEEDS, INSTALL)))
