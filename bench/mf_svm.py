"""A tenth held-out family for bench/searcher_quality.py: kernel SVMs, the length the data.

Every earlier training family's length is training: epochs, boosting rounds, trees. Here
it is the amount of training data, as in data-subset multi-fidelity tuning: each function
is scikit-learn's kernel SVM (`SVC` / `SVR`), and its value at length z is the validation
loss of the SVM fitted from scratch on the first ceil(n z / 100) of the n training samples
(z in 1..100). Nobody shaped how little data misleads: among random points, on 4 % of
the data the poly kernel fills most of the best tenth (on `svm_blobs` the sigmoid does),
on all of it the rbf fills all of `svm_swiss_roll`'s; and the sigmoid kernel, which is not
positive definite, scores worse on all the data than on a third of it at about half the
points of the regressions.

- `svm_swiss_roll` (`make_swiss_roll`, 400 samples, noise 0.5): the roll's position t
  regressed from the 3-D point; mean squared error.
- `svm_s_curve` (`make_s_curve`, 400 samples, noise 0.3): t regressed likewise; mean squared
  error.
- `svm_blobs` (`make_blobs`, 400 samples, 2 centres in 6 features, standard deviation 3: the
  classes overlap): mean hinge loss.
- `svm_xor` (400 samples drawn here from a fixed seed: two features uniform on [-1, 1]^2, the
  label the sign of their product with 10 % of the labels flipped, and 4 features of
  uniform noise): mean hinge loss.

The unit cube maps to: C 10^(-2 + 5 x0) (0.01..1000), the kernel's gamma 10^(-3 + 4 x1)
divided by the number of features (1 / features at x1 = 0.75), the kernel by x2 in thirds
(`rbf`, `poly` of degree 3 and coef0 1, `sigmoid` with coef0 0), for regression the
epsilon-insensitive tube's half-width 10^(-3 + 2.5 x3) (in units of the target's standard
deviation), for classification classes weighted by their inverse frequency where
x3 >= 0.5, and the solver's stopping tolerance 10^(-4 + 3 x4) (1e-4..0.1). libsvm stops
after MAX_ITER iterations whether it converged or not (its warning silenced): on the
regressions large C with the poly kernel does not converge in a million (seconds a fit), and
the cap holds the slowest curve near 1.2 s on one core, against 0.1-0.3 s on average (the
400 samples were picked for that cost). Each dataset is split once (seeded, 70 % training,
stratified for classes), its features standardised on the training part and a regression
target too, so its loss reads in units of the target's variance. The training part keeps
the seeded shuffled order split leaves it in, so every smaller subset is a prefix of every
larger one (3 samples at z = 1); for classes, the first sample whose class is not the first
sample's moves up to second place, so that every subset holds both. The hinge loss is that of
the decision function on labels -1 and +1 (continuous, unlike the error rate: few ties).
libsvm draws nothing at random without probability estimates, so a point has one curve. A
loss above DIVERGED, or one that is no finite number, counts as DIVERGED.

The true minimum is not known: regret is measured from the best value seen, as for the
`train` family (bench/mf_train.py).

Chosen as a whole before cade was ever measured on it, after the nine earlier families had
been: a learner none of them used, whose length is data instead of training, a named option
among its settings, and four generated datasets none of them used. Never used to choose
anything in cade: held out.

Needs numpy and scikit-learn (cade's test extras have both). Run alone
(`OMP_NUM_THREADS=1 PYTHONPATH=. python bench/mf_svm.py [--points 200]`), it prints how
well small subsets rank points on each function.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from mf_functions import MAX_FIDELITY, Function

# NEEDS and INSTALL too: this family needs what mf_train's does (searcher_quality reads them).
from mf_train import (
    DIVERGED,
    INSTALL,
    NEEDS,
    available,
    curve_function,
    rank_report,
    sklearn_data,
    split,
)

FAMILY = "svm"
# name -> (how to make the data: a loader in sklearn.datasets, or "xor" for `_xor` here,
# and its arguments, classes?)
MAKERS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "svm_swiss_roll": ("make_swiss_roll",
                       {"n_samples": 400, "noise": 0.5, "random_state": 0}, False),
    "svm_s_curve": ("make_s_curve", {"n_samples": 400, "noise": 0.3, "random_state": 0}, False),
    "svm_blobs": ("make_blobs", {"n_samples": 400, "n_features": 6, "centers": 2,
                                 "cluster_std": 3.0, "random_state": 0}, True),
    "svm_xor": ("xor", {"n_samples": 400, "flipped": 0.1, "noise_features": 4,
                        "random_state": 0}, True),
}
KERNELS = ("rbf", "poly", "sigmoid")
MAX_ITER = 10_000   # libsvm's iterations a fit, converged or not (the module docstring)


def _xor(n_samples: int, flipped: float, noise_features: int, random_state: int
         ) -> tuple[Any, Any]:
    """(features, labels 0/1): the label the sign of the first two features' product,
    a share `flipped` of them flipped, then `noise_features` features that say nothing."""
    import numpy as np

    rng = np.random.default_rng(random_state)
    features = rng.uniform(-1.0, 1.0, (n_samples, 2 + noise_features))
    labels = (features[:, 0] * features[:, 1] > 0).astype(int)
    return features, labels ^ (rng.random(n_samples) < flipped)


@functools.cache
def _dataset(name: str) -> tuple[Any, Any, Any, Any]:
    """(train x, train y, validation x, validation y), standardised (mf_train.split); for
    classes the other class's first training sample moved to second place."""
    import numpy as np

    loader, arguments, classes = MAKERS[name]
    data = _xor(**arguments) if loader == "xor" else sklearn_data(loader, arguments)
    train_x, train_y, valid_x, valid_y = split(*data, classes=classes)
    if classes:
        other = int(np.argmax(train_y != train_y[0]))
        order = np.r_[0, other, np.delete(np.arange(len(train_y)), [0, other])]
        train_x, train_y = train_x[order], train_y[order]
    return train_x, train_y, valid_x, valid_y


def settings(x: Sequence[float], name: str) -> dict[str, Any]:
    """The SVM's hyperparameters at point x of the unit cube on dataset `name` (the module
    docstring): gamma reads the dataset's number of features, and x3 chooses epsilon or
    the class weights by whether it has classes."""
    chosen: dict[str, Any] = {
        "C": 10 ** (-2 + 5 * x[0]),
        "gamma": 10 ** (-3 + 4 * x[1]) / _dataset(name)[0].shape[1],
        "kernel": KERNELS[min(int(x[2] * len(KERNELS)), len(KERNELS) - 1)]}
    if MAKERS[name][2]:
        chosen["class_weight"] = "balanced" if x[3] >= 0.5 else None
    else:
        chosen["epsilon"] = 10 ** (-3 + 2.5 * x[3])
    return {**chosen, "tol": 10 ** (-4 + 3 * x[4])}


class _SVM:
    """One point's curve, a subset at a time: each step fits afresh on a longer prefix."""

    def __init__(self, name: str, x: Sequence[float]) -> None:
        from sklearn.svm import SVC, SVR

        self.data = _dataset(name)
        self.classes = MAKERS[name][2]
        chosen = settings(x, name)
        # coef0 is the poly kernel's 1 and the sigmoid's 0 (the module docstring).
        coef0 = 0.0 if chosen["kernel"] == "sigmoid" else 1.0
        self.model = (SVC if self.classes else SVR)(**chosen, degree=3, coef0=coef0,
                                                     max_iter=MAX_ITER)
        self.curve: list[float] = []

    def advance(self) -> None:
        """The fit on one more step's prefix; its validation loss joins the curve."""
        import numpy as np

        train_x, train_y, valid_x, valid_y = self.data
        size = math.ceil(len(train_y) * (len(self.curve) + 1) / MAX_FIDELITY)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")   # ConvergenceWarning at the MAX_ITER cap
            self.model.fit(train_x[:size], train_y[:size])
            if self.classes:
                signs = np.where(valid_y == self.model.classes_[1], 1.0, -1.0)
                margins = signs * self.model.decision_function(valid_x)
                loss = float(np.maximum(0.0, 1.0 - margins).mean())
            else:
                loss = float(((self.model.predict(valid_x) - valid_y) ** 2).mean())
        self.curve.append(min(loss, DIVERGED) if math.isfinite(loss) else DIVERGED)


def function(name: str) -> Function:
    """The family's f(x, z): the validation loss of the SVM fitted on z % of the data."""
    MAKERS[name]   # an unknown name fails here (KeyError), not at the first value
    return curve_function(functools.partial(_SVM, name))


def functions() -> dict[str, tuple[int, Function, float | None, bool]]:
    """name -> (dimensions, function, minimum (None: not known), held out)."""
    # The dimensions are the hyperparameters `settings` reads: one place says which.
    return {name: (len(settings((0.5,) * 5, name)), function(name), None, True)
            for name in MAKERS}


if __name__ == "__main__":
    sys.exit(rank_report(functions(), sys.argv[1:], "refits", (available, NEEDS, INSTALL)))
