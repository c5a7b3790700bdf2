"""The live progress of a driven experiment (submit / watch), and its one-line summary.

Functions of records: `live_progress` redraws the view on stderr when it is a terminal;
elsewhere (a detached driver's log) the CLI prints the summary line instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cade_cli.spec.experiment import handed_target, length_text
from cade_cli.store.records import (
    TRIAL_STATES,
    ExperimentRecord,
    ExperimentState,
    TrialRecord,
    TrialState,
    best_trial,
)
from cade_cli.views.terminal import printable

# One colour per experiment and trial state, shared by every rich view. A trial that is
# paused, completed or errored takes the experiment's colour (the states are equal strings).
STATE_STYLES: dict[str, str] = {
    ExperimentState.PENDING: "yellow", ExperimentState.ACTIVE: "green",
    ExperimentState.PAUSED: "yellow", ExperimentState.COMPLETED: "blue",
    ExperimentState.ERRORED: "red", ExperimentState.CANCELED: "magenta",
    TrialState.QUEUED: "yellow", TrialState.RUNNING: "green", TrialState.STOPPED: "dim",
    TrialState.PREEMPTED: "yellow",
}


def state_counts(trials: list[TrialRecord]) -> str:
    counts = Counter(t.state for t in trials)
    parts = [f"{counts[s]} {s}" for s in TRIAL_STATES if counts[s]]
    return ", ".join(parts) if parts else "no trials yet"


def best_text(exp: ExperimentRecord, trials: list[TrialRecord]) -> str:
    top = best_trial(trials, exp.smaller_is_better)
    if top is None:
        return f"best {exp.metric}: none yet"
    return (f"best {exp.metric}: {top.best_metric:.6g} (trial {top.id}, length "
            f"{top.best_length if top.best_length is not None else top.length})")


def rung_counts(trials: list[TrialRecord]) -> list[tuple[int, int, int]]:
    """(length, trials that reached it, trials sent to it) for every target length.

    An open target (no max_length: the trial decides) is reached when the trial is closed.
    """
    lengths = sorted({t.target_length for t in trials if t.target_length > 0})
    rows = []
    for length in lengths:
        sent = sum(1 for t in trials if t.target_length >= length)
        if handed_target(length) is None:
            reached = sum(1 for t in trials if t.target_length >= length and t.closed)
        else:
            reached = sum(1 for t in trials if t.length >= length)
        rows.append((length, reached, sent))
    return rows


def summary_line(exp: ExperimentRecord, trials: list[TrialRecord]) -> str:
    return printable(f"experiment {exp.id} {exp.name} [{exp.state}]: {state_counts(trials)}; "
                     f"{best_text(exp, trials)}")


def progress_view(exp: ExperimentRecord, trials: list[TrialRecord],
                  searcher_progress: float | None = None) -> RenderableType:
    title = Text(printable(f"experiment {exp.id} {exp.name} "), style="bold")
    title.append(f"({exp.searcher}, {exp.backend}) ", style="")
    title.append(exp.state, style=STATE_STYLES.get(exp.state, ""))
    if searcher_progress is not None:
        title.append(f"  {searcher_progress:.0%} of the search")
    states = Text()
    counts = Counter(t.state for t in trials)
    for state in TRIAL_STATES:
        if counts[state]:
            states.append(f"{counts[state]} {state}  ", style=STATE_STYLES.get(state, ""))
    if not trials:
        states.append("no trials yet")
    rungs = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    rungs.add_column("length", justify="right")
    rungs.add_column("reached", justify="right")
    rungs.add_column("", justify="left")
    for length, reached, sent in rung_counts(trials):
        filled = round(10 * reached / sent) if sent else 0
        rungs.add_row(length_text(length), f"{reached}/{sent}", "#" * filled + "." * (10 - filled))
    footer = Text("Ctrl-C detaches; the experiment goes on.", style="dim")
    return Group(title, states, Text(printable(best_text(exp, trials))), rungs, footer)


def stderr_is_terminal() -> bool:
    return Console(stderr=True).is_terminal


@contextmanager
def live_progress(trials_of: Callable[[ExperimentRecord], list[TrialRecord]]
                  ) -> Iterator[Callable[[ExperimentRecord], None]]:
    """An update callable that redraws the progress view of each record on stderr."""
    with Live(console=Console(stderr=True), refresh_per_second=4, transient=False) as live:
        yield lambda record: live.update(progress_view(record, trials_of(record)))
