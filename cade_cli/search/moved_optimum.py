"""Whether a short rung's best configurations sit elsewhere than the longest rung's. Pure.

A rank correlation cannot tell two things apart that call for opposite choices of model
rung (samplers/tpe.py): noise at the longest rung, which lowers the correlation but leaves
the short rung the better guide, and an optimum that moves as training goes on, which a
short rung near the top of the ranking gets wrong however well it ranks the rest. The gap
`long - short` between a trial's two results tells them apart: over the best trials at the
longest rung, a moved optimum makes the gap a slope in the params (the short rung
flatters one side of the best region), noise scatters it, and a constant offset leaves it
flat. `optimum_moved` fits that slope by least squares and asks an F-test whether it is
there. Noise at the reference, which picks the best trials, reads as a slope somewhat more
often than the test's level says (a trial far from the optimum is among the best only with
a lucky draw there): about twice as often in tests/test_moved_optimum.py.

Plain Python (no numpy or scipy on a login node): a Gram-Schmidt least-squares fit and the
F distribution's tail from the regularized incomplete beta function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from cade_cli.search.rank_correlation import MIN_PAIRS, reference_length, spearman

BEST_SHARE = 0.25   # the best trials at the reference a test looks at
ALPHA = 0.05        # the F-test's level: below it, the optimum has moved


def f_survival(f: float, dfn: int, dfd: int) -> float:
    """P(F > f) for Fisher's F distribution with (dfn, dfd) degrees of freedom."""
    if f <= 0:
        return 1.0
    return regularized_beta(dfd / 2, dfn / 2, dfd / (dfd + dfn * f))


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), by its continued fraction on the side where that converges fast."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1 - math.exp(log_front) * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The incomplete beta function's continued fraction (modified Lentz evaluation)."""
    tiny = 1e-300

    def guarded(value: float) -> float:
        return value if abs(value) > tiny else tiny

    c, d = 1.0, 1 / guarded(1 - (a + b) * x / (a + 1))
    fraction = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 / guarded(1 + numerator * d)
            c = guarded(1 + numerator / c)
            fraction *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return fraction


def residual_squares(columns: Sequence[Sequence[float]], ys: Sequence[float]) -> tuple[float, float]:
    """(total, residual) sum of squares of `ys` about its mean, before and after a
    least-squares fit on the columns plus an intercept. Columns that the others (or the
    intercept) already span are skipped, as a minimum-norm solution would."""
    mean = sum(ys) / len(ys)
    residual = [y - mean for y in ys]
    total = sum(r * r for r in residual)
    basis: list[list[float]] = []
    for column in columns:
        centre = sum(column) / len(column)
        vector = [value - centre for value in column]
        scale = math.sqrt(sum(v * v for v in vector))
        for q in basis:  # modified Gram-Schmidt: one direction at a time, for stability
            dot = sum(v * w for v, w in zip(vector, q))
            vector = [v - dot * w for v, w in zip(vector, q)]
        norm = math.sqrt(sum(v * v for v in vector))
        if norm <= 1e-10 * scale:   # spanned already (a constant column too: 0 <= 0)
            continue
        q = [v / norm for v in vector]
        basis.append(q)
        along = sum(r * w for r, w in zip(residual, q))
        residual = [r - along * w for r, w in zip(residual, q)]
    return total, sum(r * r for r in residual)


def best_pairs(seen: dict[int, dict[int, float]], length: int,
               at_least: int) -> tuple[dict[int, float], list[int]] | None:
    """The reference length's results, and the trials with results at `length` and there
    whose result there is among the best BEST_SHARE of those pairs (at least `at_least` of
    them; ties at the cut all kept), in trial order; None when fewer pairs than that exist
    or `length` is not below the reference."""
    reference = reference_length(seen)
    if reference is None or length >= reference:
        return None
    top = seen[reference]
    paired = [trial for trial in sorted(seen[length]) if trial in top]
    if len(paired) < at_least:
        return None
    cut = sorted(top[trial] for trial in paired)[max(at_least, int(len(paired) * BEST_SHARE)) - 1]
    return top, [trial for trial in paired if top[trial] <= cut]


def optimum_moved(seen: dict[int, dict[int, float]], length: int,
                  points: Mapping[int, Sequence[float]], choices: Sequence[int] = ()) -> bool:
    """Whether, over the best trials at the reference length (`best_pairs`), the gap
    between a trial's result there and at `length` depends linearly on its point
    (F-test, p < ALPHA). `seen`: length -> {trial: minimised value}; `points`: trial -> its
    coordinates, all of the same dimension; `choices`: per coordinate, how many values it
    has where it is a categorical's index, 0 where it is a number (none given: all are)."""
    kinds = list(choices) or [0] * len(next(iter(points.values()), ()))
    dims = sum(1 if k == 0 else k - 1 for k in kinds)   # the slopes the fit estimates
    if dims == 0:
        return False
    found = best_pairs(seen, length, max(MIN_PAIRS, dims + 3))
    if found is None:
        return False
    top, kept = found
    gaps = [top[trial] - seen[length][trial] for trial in kept]
    columns = design_columns([points[trial] for trial in kept], kinds)
    total, residual = residual_squares(columns, gaps)
    if total <= 1e-18:
        return False    # the same gap everywhere: an offset, not a move
    if residual <= 1e-18 * total:
        return True     # the gap is exactly a plane
    free = len(kept) - dims - 1
    statistic = ((total - residual) / dims) / (residual / free)
    return f_survival(statistic, dims, free) < ALPHA


def design_columns(rows: Sequence[Sequence[float]], kinds: Sequence[int]) -> list[list[float]]:
    """The fit's columns: a number as it is; a categorical of k values as k - 1 indicators
    (the first value is the intercept's), since the order of its values means nothing: a
    short rung that flatters the middle one of three would leave no slope in the index."""
    columns: list[list[float]] = []
    for i, kind in enumerate(kinds):
        if kind == 0:
            columns.append([float(row[i]) for row in rows])
        else:
            columns += [[float(int(row[i]) == value) for row in rows] for value in range(1, kind)]
    return columns


def best_share_correlation(seen: dict[int, dict[int, float]], length: int) -> float | None:
    """Spearman's correlation between `length` and the reference length over the best
    BEST_SHARE of their pairs at the reference (None where too few pairs): how well the
    short rung ranks the trials that matter, where the optimum has moved."""
    found = best_pairs(seen, length, MIN_PAIRS)
    if found is None:
        return None
    top, kept = found
    return spearman([seen[length][trial] for trial in kept], [top[trial] for trial in kept])
