"""`cade report --html`: one self-contained HTML file about an experiment, readable offline.

Inline CSS and JS (from `report_assets/`) and inline SVG charts drawn here: no CDN, no
external request, no third-party JS. Every string that comes from the user (names, params,
spec, messages) goes through `html.escape`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from cade_cli.errors import CadeError
from cade_cli.spec.yamlpos import dump_yaml
from cade_cli.store.records import ExperimentRecord
from cade_cli.views.model import (
    ExperimentData,
    LedgerReader,
    best_metric,
    best_trial,
    flatten_params,
    format_value,
    latest_segments,
    param_columns,
    read_experiment,
    sort_trials,
)
from cade_cli.views.plots import (
    HparamAxis,
    best_values,
    curve_lines,
    hparam_axes,
    ladder_bars,
)

CURVE_TRIALS = 50   # learning curves drawn: the best trials by the searcher's metric
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
# Runs first: any script error lands in an attribute the tests (and curious users) can read.
ERROR_TRAP = ("window.onerror=function(m,s,l){var d=document.documentElement;"
              "d.setAttribute('data-js-errors',(d.getAttribute('data-js-errors')||'')+m+' @'+l+';');};")


def _asset(name: str) -> str:
    return (resources.files("cade_cli.views") / "report_assets" / name).read_text(encoding="utf-8")


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _color(trial_id: int) -> str:
    return PALETTE[(trial_id - 1) % len(PALETTE)]


# ----------------------------------------------------------------------------- SVG helpers

class Scale:
    """Maps a data range onto pixels (log10 when `log`); a flat range maps to the middle."""

    def __init__(self, low: float, high: float, start: float, end: float, log: bool = False):
        self.log = log and low > 0
        self.low, self.high = (math.log10(low), math.log10(high)) if self.log else (low, high)
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        value = math.log10(value) if self.log else value
        if self.high == self.low:
            return (self.start + self.end) / 2
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(label)}">' + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "middle", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {extra}>'
            f"{escape(text)}</text>")


def _axes(x: Scale, y: Scale, xlabel: str, ylabel: str, ticks: int = 4) -> list[str]:
    """Left and bottom axes with a few ticks and light grid lines."""
    parts = [f'<line class="axis" x1="{x.start}" y1="{y.start}" x2="{x.end}" y2="{y.start}"/>',
             f'<line class="axis" x1="{x.start}" y1="{y.start}" x2="{x.start}" y2="{y.end}"/>']
    for i in range(ticks + 1):
        fraction = i / ticks
        for scale, vertical in ((x, False), (y, True)):
            raw = scale.low + fraction * (scale.high - scale.low)
            value = 10 ** raw if scale.log else raw
            pos = scale.start + fraction * (scale.end - scale.start)
            if vertical:
                parts.append(f'<line class="grid" x1="{x.start}" y1="{pos:.1f}" x2="{x.end}" '
                             f'y2="{pos:.1f}"/>' + _text(x.start - 4, pos + 4, f"{value:.3g}", "end"))
            else:
                parts.append(_text(pos, y.start + 14, f"{value:.3g}"))
    parts.append(_text((x.start + x.end) / 2, y.start + 30, xlabel))
    parts.append(_text(12, (y.start + y.end) / 2, ylabel, extra=f'transform="rotate(-90 12 '
                       f'{(y.start + y.end) / 2:.1f})"'))
    return parts


def _range(values: list[float]) -> tuple[float, float]:
    return (min(values), max(values)) if values else (0.0, 1.0)


# ----------------------------------------------------------------------------- charts

def curves_chart(data: ExperimentData, kind: str, metric: str, width: int = 560,
                 height: int = 320) -> str:
    # The leading trials only, each at most a point per two pixels: more is ink, not
    # information, and it kept the page at megabytes per thousand trials.
    lines = curve_lines(data, metric, count=CURVE_TRIALS, kinds=(kind,), max_points=width // 2)
    if not lines:
        return f'<p class="muted">No {escape(kind)} values of {escape(metric)} yet.</p>'
    x = Scale(*_range([v for line in lines for v in line.xs]), 56, width - 12)
    y = Scale(*_range([v for line in lines for v in line.ys]), height - 40, 12)
    body = _axes(x, y, "length", metric)
    for line in lines:
        trial = int(line.label.split()[0][1:])
        points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(line.xs, line.ys))
        body.append(f'<polyline class="curve" stroke="{_color(trial)}" points="{points}">'
                    f"<title>{escape(f'trial {trial} {kind}: {line.ys[-1]:.4g} at {line.xs[-1]:g}')}"
                    "</title></polyline>")
        body += [f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="2" fill="{_color(trial)}">'
                 f"<title>{escape(f'trial {trial}, length {a:g}: {b:.4g}')}</title></circle>"
                 for a, b in zip(line.xs, line.ys) if kind == "validation"]
    legend = "".join(f'<span style="--c:{_color(t.id)}">#{t.id}</span>'
                     for t in sort_trials(data, "id") if any(l.label.startswith(f"#{t.id} ") for l in lines))
    shown = f" (the best {CURVE_TRIALS} of {len(data.trials)} trials)" \
        if len(data.trials) > CURVE_TRIALS else ""
    return (f"<div><h3>{escape(kind + shown)}</h3>" + _svg(width, height, f"{kind} {metric}", body)
            + f'<div class="legend">{legend}</div></div>')


def _axis_scale(axis: HparamAxis, start: float, end: float) -> Scale:
    low, high = _range(axis.xs)
    return Scale(low, high, start, end, axis.log)


def parallel_chart(data: ExperimentData, metric: str, width: int = 1000, height: int = 340) -> str:
    """One vertical axis per varying hyperparameter plus the metric; one line per trial."""
    axes = hparam_axes(data, metric)
    best = best_values(data, metric)
    if not axes or not best:
        return '<p class="muted">Not enough trials with a metric and varying hyperparameters.</p>'
    trials = sorted(best)
    count = len(axes) + 1
    xs = [60 + i * (width - 120) / (count - 1) for i in range(count)]
    scales = [_axis_scale(a, height - 40, 30) for a in axes]
    metric_scale = Scale(*_range(list(best.values())), height - 40, 30)
    body = []
    names = [a.name for a in axes] + [metric]
    for x, name, scale in zip(xs, names, scales + [metric_scale]):
        body.append(f'<line class="axis" x1="{x:.1f}" y1="{scale.start}" x2="{x:.1f}" y2="{scale.end}"/>')
        body.append(_text(x, 18, name))
    for axis, x, scale in zip(axes, xs, scales):
        labels = axis.categories or tuple(f"{v:.3g}" for v in _range(axis.xs))
        values = range(len(labels)) if axis.categories else _range(axis.xs)
        body += [_text(x + 4, scale(v) + 4, label, "start") for v, label in zip(values, labels)]
    low, high = _range(list(best.values()))
    ramp = Scale(low, high, 0, 1)
    positions = [dict(zip(axis.trials, axis.xs)) for axis in axes]
    for trial in trials:
        if any(trial not in found for found in positions):
            continue  # a trial without one of the hyperparameters has no line to draw
        ys = [scale(found[trial]) for found, scale in zip(positions, scales)]
        ys.append(metric_scale(best[trial]))
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
        shade = ramp(best[trial]) if data.experiment.smaller_is_better else 1 - ramp(best[trial])
        color = f"hsl({int(140 - 140 * shade)},70%,42%)"  # green = best, red = worst
        body.append(f'<polyline class="pc" stroke="{color}" points="{points}"><title>'
                    f"{escape(f'trial {trial}: {metric} {best[trial]:.4g}')}</title></polyline>")
    return _svg(width, height, "parallel coordinates", body)


def scatter_charts(data: ExperimentData, metric: str, size: int = 300) -> str:
    charts = []
    for axis in hparam_axes(data, metric):
        x = _axis_scale(axis, 56, size - 12)
        y = Scale(*_range(axis.ys), size - 40, 12)
        body = _axes(x, y, axis.name, metric) if not axis.categories else _axes(
            Scale(0, max(len(axis.categories) - 1, 1), 56, size - 12), y, axis.name, metric, 1)
        for trial, a, b in zip(axis.trials, axis.xs, axis.ys):
            shown = axis.categories[int(a)] if axis.categories else f"{a:.4g}"
            body.append(f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="4" fill="{_color(trial)}">'
                        f"<title>{escape(f'trial {trial}: {axis.name}={shown}, {metric} {b:.4g}')}"
                        "</title></circle>")
        if axis.categories:
            body += [_text(x(i), size - 46, c) for i, c in enumerate(axis.categories)]
        charts.append(_svg(size, size, f"{metric} vs {axis.name}", body))
    return "".join(charts) or '<p class="muted">No varying hyperparameters with a metric yet.</p>'


def ladder_chart(data: ExperimentData, width: int = 640, height: int = 260) -> str:
    labels, reached, promoted = ladder_bars(data)
    if not labels:
        return ""
    x = Scale(0, len(labels), 56, width - 12)
    y = Scale(0, max(reached + [1]), height - 40, 16)
    body = _axes(Scale(0, len(labels), 56, width - 12), y, "bracket, rung length", "trials", 2)[:2]
    step = (x.end - x.start) / len(labels)
    for i, (label, r, p) in enumerate(zip(labels, reached, promoted)):
        for offset, value, color, name in ((0.1, r, "#93c5fd", "reached"), (0.5, p, "#2563eb", "promoted")):
            left = x.start + (i + offset) * step
            body.append(f'<rect x="{left:.1f}" y="{y(value):.1f}" width="{step * 0.4:.1f}" '
                        f'height="{y.start - y(value):.1f}" fill="{color}"><title>'
                        f"{escape(f'{label}: {value} {name}')}</title></rect>")
        body.append(_text(x.start + (i + 0.5) * step, y.start + 14, label))
    return _svg(width, height, "rung ladder", body) + (
        '<div class="legend"><span style="--c:#93c5fd">reached</span>'
        '<span style="--c:#2563eb">promoted</span></div>')


# ----------------------------------------------------------------------------- page

def _overview(data: ExperimentData) -> str:
    exp = data.experiment
    best = best_trial(data)
    code = (exp.code_commit or "-") + (" (uncommitted changes)" if exp.code_dirty else "")
    rows: list[tuple[str, str]] = [
        ("state", f'<span class="state state-{escape(exp.state)}">{escape(exp.state)}</span>'),
        ("searcher", escape(exp.searcher)),
        ("metric", escape(f"{exp.metric} ({'smaller' if exp.smaller_is_better else 'larger'} is better)")),
        ("best trial", escape(f"#{best.id}: {format_value(best_metric(data, best))}") if best else "-"),
        ("trials", str(len(data.trials))), ("backend", escape(exp.backend)),
        ("seed", str(exp.seed)), ("code version", escape(code)), ("owner", escape(exp.owner)),
        ("spec file", escape(exp.spec_path)), ("created", _when(exp.created)),
        ("ended", _when(exp.ended))]
    if exp.message:
        rows.append(("message", escape(exp.message)))
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    spec = dump_yaml(exp.spec)
    return (f'<dl class="overview">{items}</dl><details><summary>configuration</summary>'
            f"<pre>{escape(spec)}</pre></details>")


def _cell(value: Any, numeric_sort: float | None = None) -> str:
    text = escape(format_value(value))
    css = "" if isinstance(value, (int, float)) and not isinstance(value, bool) else ' class="text"'
    data = f' data-value="{numeric_sort!r}"' if numeric_sort is not None else ""
    return f"<td{css}{data}>{text}</td>"


def trials_table(data: ExperimentData) -> str:
    hparams = param_columns(data.trials)
    segments = latest_segments(data)
    headers = ["trial", "state", "bracket", "length", "best", "latest"] + hparams + ["job", "node"]
    rows = []
    for trial in sort_trials(data, "metric"):
        params = flatten_params(trial.params)
        segment = segments.get(trial.id)
        cells = [_cell(trial.id), _cell(trial.state), _cell(trial.bracket), _cell(trial.length),
                 _cell(best_metric(data, trial)), _cell(trial.latest_metric)]
        cells += [_cell(params.get(name)) for name in hparams]
        cells += [_cell(segment.job_id if segment else None), _cell(segment.nodes if segment else None)]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    return (f'<table class="trials sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _section(title: str, body: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


def render_report(data: ExperimentData, metric: str | None = None) -> str:
    """The whole page as one string."""
    exp = data.experiment
    metric = metric or exp.metric
    charts: list[tuple[str, Callable[[], str]]] = [
        ("Learning curves", lambda: '<div class="charts">' + curves_chart(data, "validation", metric)
         + curves_chart(data, "training", _training_metric(data, metric)) + "</div>"),
        ("Hyperparameters: parallel coordinates", lambda: parallel_chart(data, metric)),
        (f"{metric} against each hyperparameter",
         lambda: f'<div class="charts">{scatter_charts(data, metric)}</div>'),
        ("Rung ladder", lambda: ladder_chart(data)),
        ("Trials", lambda: trials_table(data))]
    sections = [_section("Overview", _overview(data))]
    sections += [_section(title, build()) for title, build in charts]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(f'cade report: {exp.name} (#{exp.id})')}</title>"
            f"<script>{ERROR_TRAP}</script><style>{_asset('report.css')}</style></head><body>"
            f"<h1>{escape(exp.name)} <span class=\"muted\">#{exp.id}</span></h1>"
            f"<p class=\"muted\">{escape(exp.spec.get('description', '') or '')}</p>"
            + "".join(sections) + f"<script>{_asset('report.js')}</script></body></html>\n")


def _training_metric(data: ExperimentData, metric: str) -> str:
    """Training curves of the same metric when reported, else the first training metric."""
    names = sorted({n for m in data.metrics if m.kind == "training" for n in m.values})
    return metric if metric in names or not names else names[0]


def read_report_data(ledger: LedgerReader, exp: ExperimentRecord) -> ExperimentData:
    """What the page draws: every validation row, the training rows of the trials whose
    curves it shows (one row per step of every trial is most of a large ledger)."""
    data = read_experiment(ledger, exp, kinds=("validation",))
    shown = sort_trials(data, "metric")[:CURVE_TRIALS]
    training = tuple(m for t in shown for m in ledger.metrics(exp.id, t.id, "training"))
    return replace(data, metrics=data.metrics + training)


def write_report(data: ExperimentData, path: Path, metric: str | None = None) -> Path:
    try:
        path.write_text(render_report(data, metric), encoding="utf-8")
    except OSError as err:
        raise CadeError(f"cannot write the report to {path}: {err.strerror}",
                        hint="choose another --html path") from err
    return path
