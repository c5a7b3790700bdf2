"""Rich renderables for `cade top` and `cade status`: pure functions of ledger records.

`render_frame(snapshot, ...)` draws one whole frame; the pieces (experiments table, rung
ladder, trials table, learning-curve sparklines, queue summary) render on their own too.
Nothing here reads the clock or the terminal: durations are relative to `snapshot.taken`.
"""

from __future__ import annotations

from collections import Counter

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cade_cli.search.searchers.base import rung_reached
from cade_cli.spec.experiment import handed_target, length_text
from cade_cli.store.records import (
    ExperimentRecord,
    SegmentRecord,
    SegmentState,
    TrialRecord,
)
from cade_cli.views.model import (
    LEADING_TRIALS,
    SORTS,
    ExperimentData,
    Snapshot,
    best_metric,
    best_trial,
    duration,
    flatten_params,
    format_value,
    ladder_stats,
    latest_segments,
    param_columns,
    progress,
    rung_ladders,
    sort_trials,
    sparkline,
    validation_curve,
)
from cade_cli.views.progress import STATE_STYLES
from cade_cli.views.terminal import printable

__all__ = [
    "SORTS",
    "curves_table",
    "experiments_table",
    "ladder_table",
    "overview",
    "queue_summary",
    "render_frame",
    "trials_table",
]

KEYS_HELP = "n/p switch  s sort  r reverse  q quit"


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def progress_bar(fraction: float | None, width: int = 10) -> str:
    if fraction is None:
        return "length decided by the trials"
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled) + f" {fraction * 100:3.0f}%"


def _direction(exp: ExperimentRecord) -> str:
    return "↓" if exp.smaller_is_better else "↑"


def experiments_table(snapshot: Snapshot, width: int = 120) -> Table:
    """All experiments; the selected one marked and detailed (trials, progress, best)."""
    columns = ["", "id", "name", "state", "searcher", "trials", "progress", "best", "elapsed"]
    if width < 100:  # keep what tells experiments apart
        columns = [c for c in columns if c not in ("searcher", "elapsed")]
    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
    for name in columns:
        table.add_column(name, justify="right" if name in ("id", "trials", "best", "elapsed") else "left",
                         no_wrap=True, overflow="ellipsis", min_width=len(name))
    current = snapshot.current
    for exp in snapshot.experiments:
        data = current if current and current.experiment.id == exp.id else None
        cells = {"": "▶" if data else "", "id": str(exp.id), "name": Text(printable(exp.name)),
                 "state": _state(exp.state), "searcher": exp.searcher,
                 "trials": str(data.tally.total) if data else "",
                 "progress": progress_bar(progress(data)) if data else "",
                 "best": _best_text(data) if data else "",
                 "elapsed": duration((exp.ended or snapshot.taken) - exp.created)}
        table.add_row(*(cells[c] for c in columns), style="bold" if data else "")
    return table


def _best_text(data: ExperimentData) -> str:
    best = best_trial(data)
    if best is None:
        return "-"
    return f"{format_value(best_metric(data, best))} (#{best.id})"


def overview(data: ExperimentData) -> Text:
    exp = data.experiment
    counts = data.tally.states()
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials yet"
    text = Text()
    text.append(printable(f"{exp.name} (#{exp.id})"), style="bold")
    text.append("  ")
    text.append_text(_state(exp.state))
    text.append(printable(f"  {exp.searcher} on {exp.backend}  metric {exp.metric} {_direction(exp)}"
                          f"  seed {exp.seed}"))
    text.append(f"\ntrials: {states}  best: {_best_text(data)}")
    if exp.message:
        text.append("\n" + printable(exp.message, keep_newlines=True), style="red")
    return text


def ladder_table(data: ExperimentData) -> Table:
    """One row per rung of each bracket: what reached it and what became of them."""
    table = Table(box=box.SIMPLE_HEAD, title="rung ladder", title_justify="left", pad_edge=False)
    for name in ("br", "rung", "length", "reached", "promoted", "stopped", "completed",
                 "failed", "running", "waiting"):
        table.add_column(name, justify="right", no_wrap=True)
    for bracket, rungs in enumerate(ladder_stats(data)):
        for index, rung in enumerate(rungs):
            table.add_row(str(bracket) if index == 0 else "", str(index), length_text(rung.length),
                          *(str(n) if n else "·" for n in (
                              rung.reached, rung.promoted, rung.stopped, rung.completed,
                              rung.errored, rung.running, rung.waiting)))
    return table


FIXED_COLUMNS = ("id", "state", "br", "rung", "length", "latest", "best")
JOB_COLUMNS = ("job", "sched", "node/reason")
DROPPABLE = ("job", "br", "sched")  # dropped in this order when the terminal is narrow


def _trial_cells(data: ExperimentData, trial: TrialRecord, segment: SegmentRecord | None,
                 ladders: list[list[int]]) -> dict[str, str]:
    rung = rung_reached(ladders, trial.bracket, trial.length)
    cells = {"id": str(trial.id), "state": trial.state, "br": str(trial.bracket),
             "rung": "-" if rung is None else str(rung),
             # An open target (no max_length): the trial decides, so there is no "of N".
             "length": f"{trial.length}/{handed_target(trial.target_length) or '-'}",
             "latest": format_value(trial.latest_metric),
             "best": format_value(best_metric(data, trial)),
             "job": "-", "sched": "-", "node/reason": "-"}
    if segment:
        cells.update({"job": segment.job_id or "-", "sched": segment.state,
                      "node/reason": segment.nodes or segment.reason or "-"})
    cells.update((k, format_value(v)) for k, v in flatten_params(trial.params).items())
    # Params, scheduler reasons and node names come from trials and schedulers.
    return {key: printable(value) for key, value in cells.items()}


def _column_width(name: str, rows: list[dict[str, str]]) -> int:
    # The widest cell plus the padding and separator around it.
    return max([len(name)] + [len(row.get(name, "-")) for row in rows]) + 3


def _varying_first(names: list[str], rows: list[dict[str, str]]) -> list[str]:
    """Hyperparameters that differ between trials tell more than constants: show them first."""
    return sorted(names, key=lambda n: len({row.get(n) for row in rows}) <= 1)


def _fit_columns(rows: list[dict[str, str]], hparams: list[str], width: int) -> list[str]:
    """Fixed and job columns (dropping the least useful when narrow), then the hyperparameters
    that fit, in name order."""
    fixed = list(FIXED_COLUMNS + JOB_COLUMNS)
    for name in DROPPABLE:
        if sum(_column_width(c, rows) for c in fixed) <= width:
            break
        fixed.remove(name)
    used = sum(_column_width(c, rows) for c in fixed)
    fitting = []
    for name in hparams:
        if used + _column_width(name, rows) > width:
            break
        fitting.append(name)
        used += _column_width(name, rows)
    split = len([c for c in fixed if c in FIXED_COLUMNS])
    return fixed[:split] + fitting + fixed[split:]


def trials_table(data: ExperimentData, sort: str = "metric", reverse: bool = False,
                 max_rows: int | None = None, width: int = 120) -> Table:
    """Trials with their latest job; as many hyperparameter columns as fit in `width`."""
    exp = data.experiment
    trials = sort_trials(data, sort, reverse)
    shown = trials if max_rows is None else trials[:max(max_rows, 1)]
    segments = latest_segments(data)
    ladders = rung_ladders(data)
    rows = [_trial_cells(data, t, segments.get(t.id), ladders) for t in shown]
    hparams = _varying_first(param_columns(data.trials), rows)
    columns = _fit_columns(rows, hparams, width)
    # A page (`read_page`) holds the shown trials of more: the tally counts them all.
    more = data.tally.total - len(shown)
    notes = [f"… {more} more trials"] if more > 0 else []
    hidden = len(set(hparams) - set(columns))
    if hidden:
        notes.append(f"{hidden} hyperparameters not shown (widen the terminal)")
    table = Table(box=box.SIMPLE_HEAD, title=Text(printable(f"trials ({exp.metric} {_direction(exp)})")),
                  title_justify="left", pad_edge=False, caption="; ".join(notes) or None,
                  caption_justify="left")
    for name in columns:
        left = name in ("state", "sched", "node/reason")
        table.add_column(Text(printable(name)), justify="left" if left else "right", no_wrap=True)
    for trial, row in zip(shown, rows):
        # Text, not str: a value such as "[/]" is data, not rich markup.
        table.add_row(*(_state(trial.state) if c == "state" else Text(row.get(c, "-")) for c in columns))
    return table


def curves_table(data: ExperimentData, count: int = LEADING_TRIALS, width: int = 40) -> Table:
    """Validation curves of the leading trials as sparklines on one shared scale."""
    leaders = [t for t in sort_trials(data, "metric") if best_metric(data, t) is not None][:count]
    curves = {t.id: [v for _, v in validation_curve(data, t.id)] for t in leaders}
    values = [v for curve in curves.values() for v in curve]
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("curve", no_wrap=True)
    table.add_column("range", no_wrap=True)
    if not values:
        table.add_row("", Text("no validation metrics yet", style="dim"), "")
        return table
    low, high = min(values), max(values)
    for trial in leaders:
        curve = curves[trial.id]
        table.add_row(f"#{trial.id}", sparkline(curve, low, high, width),
                      f"{format_value(curve[0])} → {format_value(curve[-1])}")
    return table


def queue_summary(data: ExperimentData) -> Text:
    """Latest segment of each trial: how many wait in the queue (and why), how many run."""
    segments = latest_segments(data).values()
    queued = [s for s in segments if s.state == SegmentState.QUEUED]
    running = [s for s in segments if s.state == SegmentState.RUNNING]
    reasons = Counter(s.reason or "unknown" for s in queued)
    nodes = sorted({node for s in running for node in s.nodes.split(",") if node})
    text = Text(f"queue: {len(queued)} queued, {len(running)} running")
    if reasons:
        text.append(printable("  pending: " + ", ".join(f"{r} ×{n}" for r, n in sorted(reasons.items()))))
    if nodes:
        text.append(printable("  nodes: " + ", ".join(nodes)))
    return text


def render_frame(snapshot: Snapshot, width: int = 120, sort: str = "metric",
                 reverse: bool = False, max_rows: int | None = None,
                 show_keys: bool = True) -> RenderableType:
    """One frame of `cade top`: everything is computed from `snapshot`."""
    order = f"sort: {sort} {'(reversed)' if reverse else ''}".rstrip()
    header = Text(f"cade top  {len(snapshot.experiments)} experiments  {order}", style="bold")
    if show_keys:
        header.append(f"  {KEYS_HELP}", style="dim")
    parts: list[RenderableType] = [header]
    if snapshot.message:
        parts.append(Text(printable(snapshot.message, keep_newlines=True), style="red"))
    parts.append(experiments_table(snapshot, width))
    data = snapshot.current
    if data is None:
        parts.append(Text("No experiments in this ledger yet: `cade submit SPEC` starts one."))
        return Group(*parts)
    parts.append(overview(data))
    if data.trials:
        parts += [ladder_table(data), trials_table(data, sort, reverse, max_rows, width),
                  Text(printable(f"{data.experiment.metric} by length, leading trials")),
                  curves_table(data, width=max(min(width // 3, 60), 10)), queue_summary(data)]
    return Group(*parts)
