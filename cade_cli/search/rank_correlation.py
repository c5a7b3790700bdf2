"""Rank correlation between rung lengths: how well short trainings rank trials as long ones
do. Pure; shared by the learned bracket policy and the TPE sampler's choice of model rung."""

from __future__ import annotations

from collections.abc import Sequence

MIN_PAIRS = 5   # results a correlation needs before it counts (fewer say little)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation; 0 when either side has no spread."""
    rx, ry = ranks(xs), ranks(ys)
    mean = (len(xs) + 1) / 2
    cov = sum((a - mean) * (b - mean) for a, b in zip(rx, ry))
    var_x = sum((a - mean) ** 2 for a in rx)
    var_y = sum((b - mean) ** 2 for b in ry)
    if var_x == 0 or var_y == 0:
        return 0.0
    return float(cov / (var_x * var_y) ** 0.5)


def reference_length(seen: dict[int, dict[int, float]]) -> int | None:
    """The length every other is compared with: the highest with MIN_PAIRS+ results."""
    enough = [length for length, results in seen.items() if len(results) >= MIN_PAIRS]
    return max(enough) if enough else None


def rung_correlations(seen: dict[int, dict[int, float]]) -> dict[int, float]:
    """length -> rank correlation with the reference length, where measured.

    `seen` maps a rung length to {trial: value} for every result reported there.
    """
    reference = reference_length(seen)
    if reference is None:
        return {}
    top = seen[reference]
    measured: dict[int, float] = {}
    for length, results in seen.items():
        # In trial order: a restored policy sums in the same order (floats are not associative).
        pairs = [(results[trial], top[trial]) for trial in sorted(results) if trial in top]
        if length < reference and len(pairs) >= MIN_PAIRS:
            measured[length] = spearman([a for a, _ in pairs], [b for _, b in pairs])
    return measured
