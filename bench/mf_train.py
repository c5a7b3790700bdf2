"""A fifth held-out family for bench/searcher_quality.py: real training, not a formula.

Each function is a small network trained by minibatch SGD with momentum and L2 on one of the
classification datasets that ship inside scikit-learn (no download), and its value at
length z is the validation cross-entropy after z epochs (z in 1..100, the trial's length).
Nobody shaped how the short trainings mislead: high learning rates lead early and diverge
or stall later, small batches and low rates start slowly and finish best, and the learning
curves cross as they do in practice.

- `train_digits_mlp` (5-D): digits (8x8 images, 10 classes), one hidden ReLU layer.
- `train_digits_softmax` (4-D): digits, softmax regression (no hidden layer).
- `train_cancer_mlp` (5-D): breast cancer (30 features, 2 classes), one hidden layer.
- `train_wine_mlp` (5-D): wine (13 features, 3 classes, 178 samples), one hidden layer.

The unit cube maps to: learning rate 10^(-3 + 3 x0) (1e-3..1), momentum 0.95 x1, L2
10^(-6 + 5 x2) (1e-6..0.1), batch size 2^(4 + 4 x3) (16..256), and for the networks with a
hidden layer its width 2^(3 + 4 x4) (8..128). Each dataset is split once (seeded, 70 %
training, stratified), its features standardised on the training part. The weights'
initialisation and the order of the minibatches come from a seed made from the point, so
a point has one learning curve, as the other families' points have one value per fidelity.
A training whose validation loss turns inf or nan, or reaches DIVERGED, counts as DIVERGED
from then on.

The true minimum is not known. Every function here says so (its minimum is None), and
searcher_quality.py measures regret against the lowest full-length value any run of the
table reached (best seen), as benchmarks of real training usually do; the ratios between
methods are what the tables compare.

Chosen as a whole, before cade was ever measured on it: scikit-learn's bundled
classification datasets but iris (four features that almost any setting separates),
digits both with and without a hidden layer. Never used to choose anything in cade: held
out.

Needs numpy and scikit-learn (cade's test extras have both). Run alone
(`PYTHONPATH=. python bench/mf_train.py [--points 200]`), it prints how well short trainings
rank points on each function. Set OMP_NUM_THREADS=1 when runs go side by side: the matrices
are small, and BLAS threads only contend.
"""

from __future__ import annotations

import functools
import itertools
import math
import struct
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mf_functions import MAX_FIDELITY, Function

FAMILY = "train"
NEEDS = "numpy and scikit-learn"
INSTALL = "pip install numpy scikit-learn (in cade's test extras)"
# name -> (dataset loader's name in sklearn.datasets, has a hidden layer)
MAKERS: dict[str, tuple[str, bool]] = {
    "train_digits_mlp": ("load_digits", True),
    "train_digits_softmax": ("load_digits", False),
    "train_cancer_mlp": ("load_breast_cancer", True),
    "train_wine_mlp": ("load_wine", True),
}
DIVERGED = 10.0        # a validation cross-entropy at or above this: the training diverged
PROBABILITY_FLOOR = 1e-15   # log loss of a certain wrong answer: finite
CACHE_LIMIT = 20_000   # learning curves kept per process (a run touches a few hundred)


def available() -> bool:
    try:
        import numpy  # noqa: F401
        import sklearn.datasets  # noqa: F401
    except ImportError:
        return False
    return True


def split(features: Any, target: Any, classes: bool, scale_features: bool = True
          ) -> tuple[Any, Any, Any, Any]:
    """(train x, train y, validation x, validation y): every training family's split, 70 %
    for training (seeded, stratified for classes); the features standardised on the
    training part unless `scale_features` is off (trees need no scaling), and a regression
    target too, so its loss reads in units of the target's variance."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    train_x, valid_x, train_y, valid_y = train_test_split(
        features.astype(np.float64), target, train_size=0.7, random_state=0,
        stratify=target if classes else None)
    if scale_features:
        mean, scale = train_x.mean(axis=0), train_x.std(axis=0)
        scale[scale == 0] = 1.0
        train_x, valid_x = (train_x - mean) / scale, (valid_x - mean) / scale
    if not classes:
        centre, spread = train_y.mean(), train_y.std()
        train_y, valid_y = (train_y - centre) / spread, (valid_y - centre) / spread
    return train_x, train_y, valid_x, valid_y


def sklearn_data(loader: str, arguments: dict[str, Any]) -> tuple[Any, Any]:
    """(features, target) from sklearn.datasets: a bundled set (`load_*`) or a generated one
    (`make_*`, its arguments seeding it)."""
    import sklearn.datasets

    make = getattr(sklearn.datasets, loader)
    return make(return_X_y=True, **arguments) if loader.startswith("load_") else make(**arguments)


def log_loss(probabilities: Any, classes: Any, truth: Any) -> float:
    """The mean -log of the probability each row gives its true class (`classes`: the
    sorted labels, one per column), floored at PROBABILITY_FLOOR."""
    import numpy as np

    picked = probabilities[np.arange(len(truth)), np.searchsorted(classes, truth)]
    return float(-np.log(np.maximum(picked, PROBABILITY_FLOOR)).mean())


def point_seed(x: Sequence[float]) -> int:
    """A seed from every bit of the point's coordinates: one curve per point."""
    return zlib.crc32(struct.pack(f"{len(x)}d", *x))


@functools.cache
def _dataset(loader: str) -> tuple[Any, Any, Any, Any]:
    """A bundled classification dataset, split and standardised (`split`)."""
    return split(*sklearn_data(loader, {}), classes=True)


def settings(x: Sequence[float], hidden: bool) -> dict[str, float]:
    """The training's hyperparameters at point x of the unit cube (the module docstring)."""
    chosen = {"learning_rate": 10 ** (-3 + 3 * x[0]), "momentum": 0.95 * x[1],
              "l2": 10 ** (-6 + 5 * x[2]), "batch": round(2 ** (4 + 4 * x[3]))}
    if hidden:
        chosen["width"] = round(2 ** (3 + 4 * x[4]))
    return chosen


class _Training:
    """One point's training, advanced an epoch at a time; the curve so far is kept.

    Cross-entropy and SGD with momentum here; bench/mf_tasks.py overrides the loss, its
    gradient and the update (`_loss`, `_output_gradient`, `_update`) for its own family."""

    def __init__(self, data: tuple[Any, Any, Any, Any], chosen: dict[str, float],
                 sizes: Sequence[int], x: Sequence[float]) -> None:
        import numpy as np

        self.np = np
        self.data = data
        self.settings = chosen
        self.rng = np.random.default_rng([int(v * 2 ** 52) for v in x])
        self.weights = [self.rng.normal(0.0, math.sqrt(2.0 / fan_in), (fan_in, fan_out))
                        for fan_in, fan_out in itertools.pairwise(sizes)]
        self.biases = [np.zeros(fan_out) for fan_out in sizes[1:]]
        self.velocity = [np.zeros_like(p) for p in self.weights + self.biases]
        self.curve: list[float] = []

    def _forward(self, inputs: Any) -> list[Any]:
        activations = [inputs]
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            out = activations[-1] @ weight + bias
            activations.append(out if layer == len(self.weights) - 1 else self.np.maximum(out, 0))
        return activations

    def _loss(self, logits: Any, labels: Any) -> float:
        np = self.np
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(labels)), labels].mean())

    def _output_gradient(self, logits: Any, labels: Any) -> Any:
        """d(mean loss)/d(outputs)."""
        np = self.np
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        probs[np.arange(len(labels)), labels] -= 1.0
        return probs / len(labels)

    def _update(self, params: list[Any], grads: list[Any]) -> None:
        for param, velocity, grad in zip(params, self.velocity, grads):
            velocity *= self.settings["momentum"]
            velocity -= self.settings["learning_rate"] * grad
            param += velocity

    def _step(self, inputs: Any, labels: Any) -> None:
        activations = self._forward(inputs)
        delta = self._output_gradient(activations[-1], labels)
        grads_w, grads_b = [], []
        for layer in reversed(range(len(self.weights))):
            grads_w.insert(0, activations[layer].T @ delta + self.settings["l2"] * self.weights[layer])
            grads_b.insert(0, delta.sum(axis=0))
            if layer:
                delta = (delta @ self.weights[layer].T) * (activations[layer] > 0)
        self._update(self.weights + self.biases, grads_w + grads_b)

    def advance(self) -> None:
        """One more epoch; its validation loss joins the curve."""
        if self.curve and self.curve[-1] >= DIVERGED:
            self.curve.append(DIVERGED)
            return
        train_x, train_y, valid_x, valid_y = self.data
        order = self.rng.permutation(len(train_y))
        batch = int(self.settings["batch"])
        with self.np.errstate(all="ignore"):
            for start in range(0, len(order), batch):
                chosen = order[start:start + batch]
                self._step(train_x[chosen], train_y[chosen])
            loss = self._loss(self._forward(valid_x)[-1], valid_y)
        self.curve.append(loss if math.isfinite(loss) and loss < DIVERGED else DIVERGED)


def _classifier(loader: str, hidden: bool, x: Sequence[float]) -> _Training:
    """A point's training on a bundled classification dataset (the module docstring)."""
    data = _dataset(loader)
    chosen = settings(x, hidden)
    inputs, classes = data[0].shape[1], int(data[1].max()) + 1
    sizes = [inputs, int(chosen["width"]), classes] if hidden else [inputs, classes]
    return _Training(data, chosen, sizes, x)


def curve_function(start: Callable[[tuple[float, ...]], Any], limit: int = CACHE_LIMIT) -> Function:
    """f(x, z): the curve of the training `start(x)` begins (an object with a `curve` list
    and an `advance()` that lengthens it), after z epochs; each point's training is kept
    (up to `limit` of them) and advanced as needed, so a point has one learning curve."""
    trainings: dict[tuple[float, ...], Any] = {}

    def value(x: Sequence[float], z: int) -> float:
        key = tuple(x)
        training = trainings.get(key)
        if training is None:
            if len(trainings) >= limit:
                trainings.clear()
            training = trainings[key] = start(key)
        epochs = max(1, min(z, MAX_FIDELITY))
        while len(training.curve) < epochs:
            training.advance()
        return training.curve[epochs - 1]

    return value


def function(name: str) -> Function:
    """The family's f(x, z) for `name`: the validation loss after z epochs at point x."""
    loader, hidden = MAKERS[name]
    return curve_function(functools.partial(_classifier, loader, hidden))


def functions() -> dict[str, tuple[int, Function, float | None, bool]]:
    """name -> (dimensions, function, minimum (None: not known), held out)."""
    # The dimensions are the hyperparameters `settings` reads: one place says which.
    return {name: (len(settings((0.5,) * 5, hidden)), function(name), None, True)
            for name, (_, hidden) in MAKERS.items()}


def rank_report(family: dict[str, tuple[int, Function, float | None, bool]],
                argv: list[str], unit: str = "epochs",
                needs: tuple[Callable[[], bool], str, str] = (available, NEEDS, INSTALL)) -> int:
    """How well short trainings rank points here: Spearman's rho between the loss after z
    `unit` (epochs, rounds) and after 100, over seeded random points and over the best
    quarter of them. `needs`: the family's (available, what it needs, how to install it)."""
    import argparse
    import random
    import time

    from cade_cli.search.rank_correlation import spearman

    parser = argparse.ArgumentParser(description=(
        f"How well short trainings rank points here: Spearman's rho between the loss after z "
        f"{unit} and after {MAX_FIDELITY}, over --points seeded random points and over the "
        f"best quarter of them."))
    parser.add_argument("--points", type=int, default=200,
                        help="how many seeded random points (default 200)")
    args = parser.parse_args(argv)
    ready, what, install = needs
    if not ready():
        print(f"{Path(sys.argv[0]).name}: needs {what}: {install}", file=sys.stderr)
        return 1
    rng = random.Random(1)
    for name, (dims, value, _, _) in family.items():
        started = time.perf_counter()
        points = [tuple(rng.random() for _ in range(dims)) for _ in range(args.points)]
        final = [value(point, MAX_FIDELITY) for point in points]
        per_epoch = (time.perf_counter() - started) / (args.points * MAX_FIDELITY) * 1e3
        best = sorted(range(len(points)), key=final.__getitem__)[: len(points) // 4]
        cells = []
        for epochs in (1, 4, 11, 33):
            whole = spearman([value(point, epochs) for point in points], final)
            top = spearman([value(points[i], epochs) for i in best], [final[i] for i in best])
            cells.append(f"{epochs}: {whole:.2f} ({top:.2f})")
        print(f"{name:22s} {dims}-D  rho with 100 {unit} at {', '.join(cells)}  "
              f"({per_epoch:.2f} ms per {unit[:-1]})")
    return 0


if __name__ == "__main__":
    sys.exit(rank_report(functions(), sys.argv[1:]))
