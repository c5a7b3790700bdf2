"""An eighth held-out family for bench/searcher_quality.py: linear models trained by SGD.

The earlier training families tune numbers only (some rounded to integers). Here three of
the five hyperparameters choose among named options, as a config's `categorical` and
boolean hyperparameters do: each function is scikit-learn's `SGDClassifier` / `SGDRegressor`
trained an epoch (a pass over the training data) at a time with `partial_fit`, and its
value at length z is the validation loss after z epochs (z in 1..100). Nobody shaped how
few epochs mislead: large constant steps lead after one epoch and then wander, the decaying
schedules start slowly, and the `optimal` schedule's steps depend on the L2 strength alone.

- `linear_redundant` (`make_classification`, 1,500 samples, 40 features of which 5 are
  informative and 20 their linear combinations, 10 % of the labels flipped): log loss.
- `linear_sparse` (`make_classification`, 1,000 samples, 100 features of which 10 are
  informative, 5 % of the labels flipped): log loss.
- `linear_clusters` (`make_classification`, 1,000 samples, 20 features, 4 classes of 3
  clusters each, class separation 0.7): log loss.
- `linear_wide` (`make_regression`, 300 samples, 200 features of which 20 are informative,
  noise 20; more features than training samples): mean squared error.

The unit cube maps to: the initial step size eta0 10^(-4 + 4 x0) (1e-4..1), the penalty's
strength alpha 10^(-7 + 6 x1) (1e-7..0.1), the step schedule by x2 in thirds (`constant`,
`invscaling`, `optimal`, the last ignoring eta0), the penalty by x3 in thirds (`l2`, `l1`,
`elasticnet` with an l1 ratio of 0.5) and averaged SGD where x4 >= 0.5. Each dataset is
split once (seeded, 70 % training, stratified for classes), its features standardised on
the training part and a regression target too, so its loss reads in units of the target's
variance. The order of the examples in each pass comes from a seed made from the point, so a
point has one learning curve. A loss above DIVERGED counts as DIVERGED; one that turns inf or
nan, or a training that scikit-learn stops for overflow, counts as DIVERGED from then on.

The true minimum is not known: regret is measured from the best value seen, as for the
`train` family (bench/mf_train.py).

Chosen as a whole before cade was ever measured on it, after the seven earlier families
had been: a learner none of them used, named options among its settings, and four generated
datasets none of them used, one of them wider than it is long and one with half its
features linear combinations of five others (steps that suit one direction overshoot in
another). That one took the place of bundled digits once the rank report (below) had timed
digits, before any cade run: its ten one-vs-rest problems cost 8.7 ms an epoch against
0.8-2.4 ms here. Never used to choose anything in cade: held out.

Needs numpy and scikit-learn (cade's test extras have both). Run alone
(`OMP_NUM_THREADS=1 PYTHONPATH=. python bench/mf_linear.py [--points 200]`), it prints how
well few epochs rank points on each function.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from mf_functions import Function

# NEEDS and INSTALL too: this family needs what mf_train's does (searcher_quality reads them).
from mf_train import (
    DIVERGED,
    INSTALL,
    NEEDS,
    available,
    curve_function,
    log_loss,
    point_seed,
    rank_report,
    sklearn_data,
    split,
)

FAMILY = "linear"
# name -> (how to make the data: a loader in sklearn.datasets and its arguments, classes?)
MAKERS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "linear_redundant": ("make_classification",
                         {"n_samples": 1500, "n_features": 40, "n_informative": 5,
                          "n_redundant": 20, "flip_y": 0.1, "random_state": 0}, True),
    "linear_sparse": ("make_classification",
                      {"n_samples": 1000, "n_features": 100, "n_informative": 10,
                       "n_redundant": 0, "flip_y": 0.05, "random_state": 0}, True),
    "linear_clusters": ("make_classification",
                        {"n_samples": 1000, "n_features": 20, "n_informative": 8,
                         "n_classes": 4, "n_clusters_per_class": 3, "class_sep": 0.7,
                         "random_state": 0}, True),
    "linear_wide": ("make_regression",
                    {"n_samples": 300, "n_features": 200, "n_informative": 20,
                     "noise": 20.0, "random_state": 0}, False),
}
SCHEDULES = ("constant", "invscaling", "optimal")
PENALTIES = ("l2", "l1", "elasticnet")


@functools.cache
def _dataset(name: str) -> tuple[Any, Any, Any, Any]:
    """(train x, train y, validation x, validation y), standardised (mf_train.split)."""
    loader, arguments, classes = MAKERS[name]
    return split(*sklearn_data(loader, arguments), classes=classes)


def _third(value: float, options: tuple[str, ...]) -> str:
    """The option `value` picks when [0, 1] is cut into len(options) equal parts."""
    return options[min(int(value * len(options)), len(options) - 1)]


def settings(x: Sequence[float]) -> dict[str, Any]:
    """The learner's hyperparameters at point x of the unit cube (the module docstring)."""
    return {"eta0": 10 ** (-4 + 4 * x[0]), "alpha": 10 ** (-7 + 6 * x[1]),
            "learning_rate": _third(x[2], SCHEDULES), "penalty": _third(x[3], PENALTIES),
            "average": x[4] >= 0.5}


class _Linear:
    """One point's model, an epoch at a time; the curve kept."""

    def __init__(self, name: str, x: Sequence[float]) -> None:
        import numpy as np
        from sklearn.linear_model import SGDClassifier, SGDRegressor

        self.np = np
        self.data = _dataset(name)
        self.classes = MAKERS[name][2]
        self.rng = np.random.default_rng(point_seed(x))
        chosen = dict(settings(x), l1_ratio=0.5, random_state=0)
        self.model = (SGDClassifier(loss="log_loss", **chosen) if self.classes
                      else SGDRegressor(loss="squared_error", **chosen))
        self.labels = np.unique(self.data[1]) if self.classes else None
        self.curve: list[float] = []
        self.diverged = False

    def advance(self) -> None:
        """One more epoch, in an order of its own; its validation loss joins the curve."""
        if self.diverged:
            self.curve.append(DIVERGED)
            return
        train_x, train_y, valid_x, valid_y = self.data
        order = self.rng.permutation(len(train_y))
        extra = {"classes": self.labels} if self.classes else {}
        try:
            with warnings.catch_warnings(), self.np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                self.model.partial_fit(train_x[order], train_y[order], **extra)
                loss = self._loss(valid_x, valid_y)
        except ValueError:   # scikit-learn's "Floating-point under-/overflow occurred"
            loss = math.inf
        # A confident wrong model's log loss can pass DIVERGED and come back: only a loss
        # that is no number any more ends the training.
        self.diverged = not math.isfinite(loss)
        self.curve.append(DIVERGED if self.diverged else min(loss, DIVERGED))

    def _loss(self, inputs: Any, truth: Any) -> float:
        if self.classes:
            return log_loss(self.model.predict_proba(inputs), self.labels, truth)
        return float(((self.model.predict(inputs) - truth) ** 2).mean())


def function(name: str) -> Function:
    """The family's f(x, z) for `name`: the validation loss after z epochs at point x."""
    MAKERS[name]   # an unknown name fails here (KeyError), not at the first value
    return curve_function(functools.partial(_Linear, name))


def functions() -> dict[str, tuple[int, Function, float | None, bool]]:
    """name -> (dimensions, function, minimum (None: not known), held out)."""
    # The dimensions are the hyperparameters `settings` reads: one place says which.
    return {name: (len(settings((0.5,) * 5)), function(name), None, True) for name in MAKERS}


if __name__ == "__main__":
    sys.exit(rank_report(functions(), sys.argv[1:], "epochs", (available, NEEDS, INSTALL)))
