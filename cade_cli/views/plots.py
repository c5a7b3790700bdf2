"""`cade plot`: learning curves, metric against each hyperparameter, and the rung ladder —
drawn with plotext in the terminal, or with matplotlib into a PNG / SVG file.

The data of each plot (`curve_lines`, `hparam_axes`, `ladder_bars`) is computed from records
once; the two drawing back ends only place it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cade_cli.errors import CadeError, MissingExtraError
from cade_cli.spec.experiment import length_text
from cade_cli.views.model import (
    ExperimentData,
    flatten_params,
    ladder_stats,
    sort_trials,
    thin,
)

KINDS = ("curves", "hparams", "ladder")
IMAGE_SUFFIXES = (".png", ".svg")


class PlotInputError(CadeError):
    """A metric or plot kind the experiment does not have (invalid input: exit code 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Line:
    label: str
    xs: list[float]
    ys: list[float]
    kind: str                       # training | validation


@dataclass(frozen=True)
class HparamAxis:
    name: str
    xs: list[float]
    ys: list[float]                 # the trial's best value of the metric
    trials: tuple[int, ...] = ()    # whose points these are, in order
    log: bool = False               # a `log` hyperparameter: log-scaled axis
    categories: tuple[str, ...] = ()  # categorical: xs index into these


def metric_names(data: ExperimentData) -> list[str]:
    return sorted({name for m in data.metrics for name in m.values})


def check_metric(data: ExperimentData, metric: str | None) -> str:
    """The metric to plot (the searcher's by default); an unknown name is a user error."""
    metric = metric or data.experiment.metric
    names = metric_names(data)
    if metric not in names:
        known = ", ".join(names) or "none reported yet"
        raise PlotInputError(f"experiment {data.experiment.id} has no metric {metric!r}",
                        hint=f"reported metrics: {known}")
    return metric


def curve_lines(data: ExperimentData, metric: str, count: int = 8,
                kinds: tuple[str, ...] = ("validation", "training"),
                max_points: int | None = None) -> list[Line]:
    """Curves of `metric` (of each of `kinds`) for the `count` leading trials, each thinned
    to at most `max_points` points (a chart's resolution) when given."""
    lines = []
    by_trial = data.metrics_by_trial
    for trial in sort_trials(data, "metric")[:count]:
        for kind in kinds:
            points = sorted((m.length, float(m.values[metric])) for m in by_trial.get(trial.id, ())
                            if m.kind == kind and metric in m.values)
            if max_points is not None:
                points = thin(points, max_points)
            if points:
                lines.append(Line(f"#{trial.id} {kind}", [float(x) for x, _ in points],
                                  [y for _, y in points], kind))
    return lines


def best_values(data: ExperimentData, metric: str) -> dict[int, float]:
    """Each trial's best validation value of `metric` (direction: the experiment's)."""
    pick = min if data.experiment.smaller_is_better else max
    values: dict[int, list[float]] = {}
    for record in data.metrics:
        if record.kind == "validation" and metric in record.values:
            values.setdefault(record.trial, []).append(float(record.values[metric]))
    return {trial: pick(found) for trial, found in values.items()}


def _hparam_type(spec: dict[str, Any], dotted: str) -> str:
    node: Any = spec.get("hyperparameters") or {}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return str(node.get("type", "")) if isinstance(node, dict) else ""


def hparam_axes(data: ExperimentData, metric: str) -> list[HparamAxis]:
    """One axis per hyperparameter that varies between trials: (value, best metric) points."""
    best = best_values(data, metric)
    rows = {t.id: flatten_params(t.params) for t in data.trials if t.id in best}
    names = sorted({name for params in rows.values() for name in params})
    axes = []
    for name in names:
        pairs = [(params[name], best[trial], trial) for trial, params in sorted(rows.items())
                 if name in params]
        raw = [value for value, _, _ in pairs]
        if len({repr(v) for v in raw}) < 2:
            continue  # a constant says nothing about the metric
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
        categories: tuple[str, ...] = ()
        if numeric:
            xs = [float(v) for v in raw]
        else:
            categories = tuple(sorted({str(v) for v in raw}))
            xs = [float(categories.index(str(v))) for v in raw]
        log = numeric and _hparam_type(data.experiment.spec, name) == "log" and min(xs) > 0
        axes.append(HparamAxis(name, xs, [y for _, y, _ in pairs],
                               tuple(t for _, _, t in pairs), log, categories))
    return axes


def ladder_bars(data: ExperimentData) -> tuple[list[str], list[int], list[int]]:
    """Per rung of each bracket (label `b<bracket> <length>`): trials reached, promoted."""
    labels, reached, promoted = [], [], []
    for bracket, rungs in enumerate(ladder_stats(data)):
        for rung in rungs:
            labels.append(f"b{bracket} {length_text(rung.length)}")
            reached.append(rung.reached)
            promoted.append(rung.promoted)
    return labels, reached, promoted


# ----------------------------------------------------------------------------- plotext

def terminal_plot(data: ExperimentData, kind: str = "curves", metric: str | None = None,
                  width: int = 100, height: int = 24, color: bool = False) -> str:
    """The plot as text for the terminal (ANSI colours only when `color`)."""
    try:
        import plotext
    except ImportError as err:
        raise MissingExtraError("drawing a plot in the terminal", "plot", "plotext") from err
    figure = plotext.figure
    figure.clear()
    figure.plot_size(width, height)
    theme = "default" if color else "colorless"
    figure.theme(theme)
    _draw_terminal(figure, data, kind, metric, theme)
    text: str = figure.build().string()
    figure.clear()
    return text


def _draw_terminal(figure: Any, data: ExperimentData, kind: str, metric: str | None,
                   theme: str) -> None:
    exp = data.experiment
    if kind == "ladder":
        labels, reached, promoted = ladder_bars(data)
        texts = [f"{r} ({p} on)" for r, p in zip(reached, promoted)]
        figure.draw(figure.bar(labels, reached, labeled=texts))
        figure.title(f"{exp.name}: trials reaching each rung (promoted on) by bracket, length")
        return
    metric = check_metric(data, metric)
    if kind == "curves":
        for line in curve_lines(data, metric, count=5, kinds=_terminal_kinds(data, metric)):
            signal = figure.signal(line.xs, line.ys)
            signal.lines()
            signal.label(line.label.split()[0])
            figure.draw(signal)
        # Top right: learning curves start high on the left where the legend would hide them.
        width, _ = figure.size()
        figure.legend(x=width - 8, y=0, ha="right")
        figure.title(f"{exp.name}: {metric} by length")
        figure.label("length")
        return
    _draw_terminal_hparams(figure, data, metric, theme)


def _terminal_kinds(data: ExperimentData, metric: str) -> tuple[str, ...]:
    """Validation curves only (a terminal is too coarse for both), unless only training has it."""
    validated = any(m.kind == "validation" and metric in m.values for m in data.metrics)
    return ("validation",) if validated else ("training",)


def _grid(count: int) -> tuple[int, int]:
    cols = 2 if count in (2, 4) else min(count, 3)
    return math.ceil(count / cols), cols


def _draw_terminal_hparams(figure: Any, data: ExperimentData, metric: str, theme: str) -> None:
    axes = hparam_axes(data, metric)
    if not axes:
        raise CadeError(f"no trial of experiment {data.experiment.id} has reported {metric!r} "
                        "with hyperparameters that vary", hint="try again after some validations")
    rows, cols = _grid(len(axes))
    figure.subplots(rows, cols)
    for index, axis in enumerate(axes):
        sub = figure.subplot(index // cols + 1, index % cols + 1)
        sub.theme(theme)
        sub.draw(sub.signal(axis.xs, axis.ys))
        sub.title(f"{metric} vs {axis.name}")
        if axis.log:
            sub.ruler("x").scale("log")
        if axis.categories:
            sub.ruler("x").ticks(list(range(len(axis.categories))), list(axis.categories))


# ----------------------------------------------------------------------------- matplotlib

def save_plot(data: ExperimentData, path: Path, kind: str = "curves",
              metric: str | None = None) -> Path:
    """Draw with matplotlib into `path` (.png or .svg)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise PlotInputError(f"cannot tell the image format of {path}",
                        hint="use a file name ending in .png or .svg")
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise MissingExtraError("writing a plot to a file", "plot", "matplotlib") from err
    figure = Figure(figsize=(10, 6), layout="constrained")
    if kind == "ladder":
        _draw_ladder(figure, data)
    elif kind == "curves":
        _draw_curves(figure, data, check_metric(data, metric))
    else:
        _draw_hparams(figure, data, check_metric(data, metric))
    try:
        figure.savefig(path)
    except OSError as err:
        raise CadeError(f"cannot write {path}: {err.strerror}") from err
    return path


def _draw_curves(figure: Any, data: ExperimentData, metric: str) -> None:
    axes = figure.add_subplot()
    for line in curve_lines(data, metric):
        style = "-" if line.kind == "validation" else ":"
        axes.plot(line.xs, line.ys, style, marker="o" if line.kind == "validation" else None,
                  markersize=3, label=line.label)
    axes.set(xlabel="length", ylabel=metric, title=f"{data.experiment.name}: {metric}")
    axes.legend(fontsize="small", ncols=2)


def _draw_hparams(figure: Any, data: ExperimentData, metric: str) -> None:
    found = hparam_axes(data, metric)
    if not found:
        raise CadeError(f"no trial has reported {metric!r} with hyperparameters that vary")
    rows, cols = _grid(len(found))
    grid = figure.subplots(rows, cols, squeeze=False)
    for index, axis in enumerate(found):
        axes = grid[index // cols][index % cols]
        axes.scatter(axis.xs, axis.ys, s=14)
        axes.set(xlabel=axis.name, ylabel=metric)
        if axis.log:
            axes.set_xscale("log")
        if axis.categories:
            axes.set_xticks(range(len(axis.categories)), axis.categories)
    for index in range(len(found), rows * cols):
        grid[index // cols][index % cols].set_visible(False)


def _draw_ladder(figure: Any, data: ExperimentData) -> None:
    labels, reached, promoted = ladder_bars(data)
    axes = figure.add_subplot()
    positions = list(range(len(labels)))
    axes.bar([p - 0.2 for p in positions], reached, 0.4, label="reached")
    axes.bar([p + 0.2 for p in positions], promoted, 0.4, label="promoted")
    axes.set_xticks(positions, labels)
    axes.set(xlabel="bracket, rung length", ylabel="trials", title=f"{data.experiment.name}: rungs")
    axes.legend()
