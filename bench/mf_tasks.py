"""A sixth held-out family for bench/searcher_quality.py: real training with Adam, on
regression and classification tasks that scikit-learn ships or generates (no download).

bench/mf_train.py trains with SGD and momentum on bundled classification datasets. This
family changes what the short trainings see: the optimiser (Adam, whose early progress
depends far less on the learning rate than SGD's), the depth (two hidden ReLU layers of
the same width) and, on two of the four tasks, the loss (mean squared error on a
standardised target, so a training that predicts the mean scores about 1). The value at
length z is the validation loss after z epochs (z in 1..100, the trial's length).

- `tasks_diabetes` (regression): scikit-learn's diabetes data (442 patients, 10 features).
- `tasks_friedman1` (regression): `make_friedman1` (1,000 samples, 10 features, 5 of them
  used by a nonlinear target, noise 1.0).
- `tasks_classify4` (4 classes, cross-entropy): `make_classification` (1,500 samples,
  20 features, 8 informative and 4 redundant, 2 clusters a class, 5 % of labels flipped).
- `tasks_hastie` (2 classes, cross-entropy): `make_hastie_10_2` (1,500 samples, 10
  Gaussian features, the class set by whether their squared norm exceeds 9.34).

The unit cube maps to: learning rate 10^(-4 + 3 x0) (1e-4..0.1), Adam's beta1
0.5 + 0.49 x1 (beta2 0.999), L2 10^(-6 + 5 x2) (1e-6..0.1), batch size 2^(4 + 4 x3)
(16..256) and the hidden layers' width 2^(3 + 3 x4) (8..64). Each task is generated with
seed 0 and split once (70 % training, stratified for classes); features, and a regression
target, are standardised on the training part. As in bench/mf_train.py, the initialisation
and the minibatch order are seeded by the point, a diverged training counts as DIVERGED,
and the minimum is not known, so regret is measured from the best value seen.

Chosen as a whole, before cade was ever measured on it, after the `train` family's results
had been seen and with nothing in cade changed since: held out.

Needs numpy and scikit-learn (cade's test extras have both). Run alone
(`PYTHONPATH=. python bench/mf_tasks.py [--points 200]`), it prints how well short
trainings rank points on each task. Set OMP_NUM_THREADS=1 when runs go side by side.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import Any

import mf_train
from mf_functions import Function

FAMILY = "tasks"
NEEDS = mf_train.NEEDS
INSTALL = mf_train.INSTALL
# name -> (generator in sklearn.datasets, its keyword arguments, a regression task)
MAKERS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "tasks_diabetes": ("load_diabetes", {}, True),
    "tasks_friedman1": ("make_friedman1", {"n_samples": 1000, "noise": 1.0}, True),
    "tasks_classify4": ("make_classification",
                        {"n_samples": 1500, "n_features": 20, "n_informative": 8,
                         "n_redundant": 4, "n_classes": 4, "flip_y": 0.05}, False),
    "tasks_hastie": ("make_hastie_10_2", {"n_samples": 1500}, False),
}
BETA2, EPSILON = 0.999, 1e-8   # Adam's usual constants

available = mf_train.available


@functools.cache
def _dataset(name: str) -> tuple[Any, Any, Any, Any]:
    """(train x, train y, validation x, validation y) of a task (mf_train.split); a
    regression target is a column, a class an integer from 0."""
    import numpy as np

    maker, options, regression = MAKERS[name]
    seeded = options if maker.startswith("load_") else {"random_state": 0, **options}
    features, target = mf_train.sklearn_data(maker, seeded)
    if regression:
        target = target.astype(np.float64).reshape(-1, 1)
    else:
        target = np.unique(target, return_inverse=True)[1]   # hastie's -1/1 -> 0/1
    return mf_train.split(features, target, classes=not regression)


def settings(x: Sequence[float]) -> dict[str, float]:
    """The training's hyperparameters at point x of the unit cube (the module docstring)."""
    return {"learning_rate": 10 ** (-4 + 3 * x[0]), "beta1": 0.5 + 0.49 * x[1],
            "l2": 10 ** (-6 + 5 * x[2]), "batch": round(2 ** (4 + 4 * x[3])),
            "width": round(2 ** (3 + 3 * x[4]))}


class _AdamTraining(mf_train._Training):
    """Two hidden layers trained with Adam; mean squared error where the task regresses."""

    def __init__(self, name: str, x: Sequence[float]) -> None:
        data = _dataset(name)
        self.regression = MAKERS[name][2]
        chosen = settings(x)
        width = int(chosen["width"])
        outputs = 1 if self.regression else int(data[1].max()) + 1
        super().__init__(data, chosen, [data[0].shape[1], width, width, outputs], x)
        self.squares = [self.np.zeros_like(p) for p in self.weights + self.biases]
        self.steps = 0

    def _loss(self, outputs: Any, targets: Any) -> float:
        if self.regression:
            return float(((outputs - targets) ** 2).mean())
        return super()._loss(outputs, targets)

    def _output_gradient(self, outputs: Any, targets: Any) -> Any:
        if self.regression:
            return 2.0 * (outputs - targets) / len(targets)
        return super()._output_gradient(outputs, targets)

    def _update(self, params: list[Any], grads: list[Any]) -> None:
        beta1, rate = self.settings["beta1"], self.settings["learning_rate"]
        self.steps += 1
        first_debias, second_debias = 1 - beta1 ** self.steps, 1 - BETA2 ** self.steps
        # The first moment lives in the base class's `velocity` (zeros shaped as each param).
        for param, moment, square, grad in zip(params, self.velocity, self.squares, grads):
            moment *= beta1
            moment += (1 - beta1) * grad
            square *= BETA2
            square += (1 - BETA2) * grad * grad
            param -= rate * (moment / first_debias) / (self.np.sqrt(square / second_debias)
                                                       + EPSILON)


def function(name: str) -> Function:
    """The family's f(x, z) for `name`: the validation loss after z epochs at point x."""
    if name not in MAKERS:
        raise KeyError(name)
    return mf_train.curve_function(functools.partial(_AdamTraining, name))


def functions() -> dict[str, tuple[int, Function, float | None, bool]]:
    """name -> (dimensions, function, minimum (None: not known), held out)."""
    # The dimensions are the hyperparameters `settings` reads: one place says which.
    return {name: (len(settings((0.5,) * 5)), function(name), None, True) for name in MAKERS}


if __name__ == "__main__":
    sys.exit(mf_train.rank_report(functions(), sys.argv[1:]))
