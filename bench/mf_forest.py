"""A ninth held-out family for bench/searcher_quality.py: random forests and extra trees.

The earlier training families grow one model step by step: a network's epochs, boosting's
rounds, SGD's passes. Here the model is an average of independent trees, and the length is
how many: each function is scikit-learn's `RandomForestClassifier` / `Regressor` or
`ExtraTreesClassifier` / `Regressor`, grown a tree at a time by warm starts, and its value
at length z is the validation loss of the first z trees (z in 1..100). Nobody shaped how
few trees mislead: one deep tree's leaves are pure, so its log loss counts every confident
mistake in full and it reads far worse than the forest it starts, while shallow trees read
about the same at every length; the curves cross where deep meets shallow.

- `forest_quantiles` (`make_gaussian_quantiles`, 1,000 samples, 8 features, 3 classes:
  nested shells, which axis-aligned splits cut only in steps): log loss.
- `forest_circles` (`make_circles`, 1,000 samples, noise 0.2, inner circle at half the
  outer's radius; 2 features): log loss.
- `forest_friedman2` (`make_friedman2`, 1,000 samples, noise 100): mean squared error.
- `forest_sparse` (`make_sparse_uncorrelated`, 1,000 samples, 20 features of which 4 make
  a linear target: steps approximating a line): mean squared error.

The unit cube maps to: the trees' greatest depth 2^(1 + 4 x0) (2..32, rounded), the least
samples in a leaf 2^(6 x1) (1..64, rounded), the share of features a split may look at
0.05 + 0.95 x2, the kind of forest by x3 in halves (`random`: the best split of each drawn
feature; `extra`: a random threshold for each) and bootstrap samples where x4 >= 0.5. Each
dataset is split once (seeded, 70 % training, stratified for classes), features left
unscaled (trees need no scaling) and a regression target standardised on the training part,
so its loss reads in units of the target's variance. The forest's random state is a seed
made from the point, so a point has one learning curve. A loss above DIVERGED counts as
DIVERGED.

The true minimum is not known: regret is measured from the best value seen, as for the
`train` family (bench/mf_train.py).

Chosen as a whole before cade was ever measured on it, after the eight earlier families
had been: a learner none of them used, whose length adds models instead of training one
longer, two named options among its settings, and four generated datasets none of them
used. Never used to choose anything in cade: held out.

Needs numpy and scikit-learn (cade's test extras have both). Run alone
(`OMP_NUM_THREADS=1 PYTHONPATH=. python bench/mf_forest.py [--points 200]`), it prints how
well few trees rank points on each function.
"""

from __future__ import annotations

import functools
import sys
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

FAMILY = "forest"
# name -> (how to make the data: a loader in sklearn.datasets and its arguments, classes?)
MAKERS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "forest_quantiles": ("make_gaussian_quantiles",
                         {"n_samples": 1000, "n_features": 8, "n_classes": 3,
                          "random_state": 0}, True),
    "forest_circles": ("make_circles",
                       {"n_samples": 1000, "noise": 0.2, "factor": 0.5, "random_state": 0}, True),
    "forest_friedman2": ("make_friedman2",
                         {"n_samples": 1000, "noise": 100.0, "random_state": 0}, False),
    "forest_sparse": ("make_sparse_uncorrelated",
                      {"n_samples": 1000, "n_features": 20, "random_state": 0}, False),
}
KINDS = ("random", "extra")


@functools.cache
def _dataset(name: str) -> tuple[Any, Any, Any, Any]:
    """(train x, train y, validation x, validation y), features unscaled (mf_train.split)."""
    loader, arguments, classes = MAKERS[name]
    return split(*sklearn_data(loader, arguments), classes=classes, scale_features=False)


def settings(x: Sequence[float]) -> dict[str, Any]:
    """The forest's hyperparameters at point x of the unit cube (the module docstring)."""
    return {"max_depth": round(2 ** (1 + 4 * x[0])), "min_samples_leaf": round(2 ** (6 * x[1])),
            "max_features": 0.05 + 0.95 * x[2], "kind": KINDS[int(x[3] >= 0.5)],
            "bootstrap": x[4] >= 0.5}


class _Forest:
    """One point's forest, a tree at a time; the curve kept. The validation predictions
    are summed tree by tree, so each step costs one tree's prediction, not z of them."""

    def __init__(self, name: str, x: Sequence[float]) -> None:
        from sklearn import ensemble

        self.data = _dataset(name)
        self.classes = MAKERS[name][2]
        chosen = settings(x)
        kind = {"random": "RandomForest", "extra": "ExtraTrees"}[chosen.pop("kind")]
        learner = getattr(ensemble, kind + ("Classifier" if self.classes else "Regressor"))
        self.model = learner(n_estimators=0, warm_start=True, random_state=point_seed(x),
                             **chosen)
        self.summed: Any = 0.0
        self.curve: list[float] = []

    def advance(self) -> None:
        """One more tree; the validation loss of all grown so far joins the curve."""
        train_x, train_y, valid_x, valid_y = self.data
        self.model.n_estimators = len(self.curve) + 1
        self.model.fit(train_x, train_y)
        tree = self.model.estimators_[-1]
        self.summed = self.summed + (tree.predict_proba(valid_x) if self.classes
                                     else tree.predict(valid_x))
        mean = self.summed / self.model.n_estimators
        loss = (log_loss(mean, self.model.classes_, valid_y) if self.classes
                else float(((mean - valid_y) ** 2).mean()))
        self.curve.append(min(loss, DIVERGED))


def function(name: str) -> Function:
    """The family's f(x, z): the validation loss of the first z trees at point x."""
    MAKERS[name]   # an unknown name fails here (KeyError), not at the first value
    return curve_function(functools.partial(_Forest, name))


def functions() -> dict[str, tuple[int, Function, float | None, bool]]:
    """name -> (dimensions, function, minimum (None: not known), held out)."""
    # The dimensions are the hyperparameters `settings` reads: one place says which.
    return {name: (len(settings((0.5,) * 5)), function(name), None, True) for name in MAKERS}


if __name__ == "__main__":
    sys.exit(rank_report(functions(), sys.argv[1:], "trees", (available, NEEDS, INSTALL)))
