"""What `cade preview` and `cade simulate` print: the plan, the simulated result, a progress bar."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cade_cli.jobs.array import arrays_asked
from cade_cli.jobs.pack import pack_shape
from cade_cli.search.plan import Plan
from cade_cli.search.samplers import SAMPLING_SEARCHERS, describe_sampler
from cade_cli.search.searchers.base import UNFINISHED
from cade_cli.search.searchers.bracket_policy import describe as describe_policy
from cade_cli.search.simulate import ProgressCallback, SimulationResult
from cade_cli.search.space import flatten
from cade_cli.spec import determined
from cade_cli.spec.experiment import ExperimentSpec, length_text
from cade_cli.spec.lengths import amount
from cade_cli.spec.settings import Settings
from cade_cli.views.terminal import printable

PROGRESS_DELAY = 1.0   # seconds before a progress bar appears


def print_plan(spec: ExperimentSpec, plan: Plan, settings: Settings | None = None) -> None:
    _print_plan(_stdout(), spec, plan, settings or Settings())


def jobs_text(spec: ExperimentSpec, settings: Settings) -> str:
    """How trials go to the scheduler when not one job each: packed, or in job arrays."""
    shape = pack_shape(spec, settings.pack)
    if shape is not None:
        return (f"Packing: {shape.slots} slots per job, "
                f"{shape.slots // shape.slots_per_trial} trials per job")
    if arrays_asked(spec, settings):
        size = settings.max_array_size or "the scheduler's limit"
        return f"Job arrays: first segments in arrays of at most {size}"
    return ""


def print_simulation(spec: ExperimentSpec, result: SimulationResult, seed: int) -> None:
    _print_simulation(_stdout(), spec, result, seed)


def _stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _print_plan(console: Console, spec: ExperimentSpec, plan: Plan, settings: Settings) -> None:
    unit = plan.length_unit
    console.print(f"[bold]{escape(spec.name)}[/]: searcher [bold]{plan.searcher}[/], "
                  f"metric {spec.searcher.metric} "
                  f"({'smaller' if spec.searcher.smaller_is_better else 'larger'} is better)")
    brackets = Table()
    brackets.add_column("bracket", justify="right")
    brackets.add_column(f"rung lengths ({unit})")
    brackets.add_column("max trials", justify="right")
    brackets.add_column("at once", justify="right")
    for index, bracket in enumerate(plan.brackets):
        brackets.add_row(str(index), " ".join(length_text(r) for r in bracket.rungs),
                         str(bracket.max_trials), str(bracket.max_concurrent_trials))
    console.print("[bold]Brackets[/]")
    console.print(brackets)
    ends = Table()
    ends.add_column(f"length ({unit})", justify="right")
    ends.add_column("trials", justify="right")
    for length, trials in plan.ends:
        ends.add_row(length_text(length), str(trials))
    ends.add_section()
    ends.add_row("total", str(plan.total_trials), style="bold")
    console.print("[bold]Trials ending their training at each length[/]")
    console.print(ends)
    if plan.ends_note:
        console.print(f"({plan.ends_note})", markup=False)
    if plan.total_length is None:
        console.print(f"Length: decided by each trial's own code (no searcher.max_length); a trial "
                      f"is done when its process exits 0; lengths are counted in {unit}")
    else:
        console.print(f"Total length trained: [bold]{amount(plan.total_length, unit)}[/]")
    if plan.note:
        console.print(f"Concurrency: {plan.note}")
    if plan.searcher in SAMPLING_SEARCHERS:
        console.print(f"Sampler: {describe_sampler(plan.sampler)}", markup=False)
    if plan.bracket_policy:
        console.print(f"Bracket policy: {describe_policy(plan.bracket_policy)}", markup=False)
    variant = determined.asha_variant(spec)
    if variant:
        console.print(variant)
    jobs = jobs_text(spec, settings)
    if jobs:
        console.print(jobs, markup=False)


class ProgressBar:
    """A progress bar on stderr, shown only on a terminal and once a run takes a while."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.enabled = sys.stderr.isatty()
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __call__(self, fraction: float) -> None:
        if not self.enabled or time.monotonic() - self.began < PROGRESS_DELAY:
            return
        if self.progress is None:
            self.progress = Progress(TextColumn("simulating"), BarColumn(),
                                     TextColumn("{task.percentage:>3.0f}%"),
                                     TimeElapsedColumn(), console=Console(stderr=True),
                                     transient=True)
            self.progress.start()
            self.task = self.progress.add_task("simulate", total=1.0)
        assert self.task is not None
        self.progress.update(self.task, completed=fraction)

    def __enter__(self) -> ProgressCallback:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _print_simulation(console: Console, spec: ExperimentSpec, result: SimulationResult,
                   seed: int) -> None:
    unit = spec.searcher.length_unit
    states = Counter(t.state for t in result.trials)
    console.print(f"[bold]{escape(spec.name)}[/]: simulated {spec.searcher.name} search, seed {seed}: "
                  f"{_count(len(result.trials), 'trial')} "
                  f"({', '.join(f'{n} {s}' for s, n in sorted(states.items()))})")
    failed = [t for t in result.trials if t.state == "errored" and t.message]
    if failed:   # an exception in the objective fails its trial: say which, once
        more = f" ({len(failed) - 1} more errored)" if len(failed) > 1 else ""
        console.print(f"Trial {failed[0].trial} errored at length {failed[0].length}: "
                      f"{escape(printable(failed[0].message))}{more}")
    if result.best is None:
        console.print("No trial reported a usable metric.")
    else:
        best = next(t for t in result.trials if t.trial == result.best.trial)
        console.print(f"Best: trial [bold]{best.trial}[/], {escape(spec.searcher.metric)} "
                      f"[bold]{result.best.metric:.6g}[/] at length {amount(result.best.length, unit)}")
        params = Table("hyperparameter", "value")
        for name, value in flatten(best.params).items():
            params.add_row(escape(printable(name)), escape(printable(_short(value))))
        console.print(params)
    console.print("[bold]Trials by final length[/] (for ASHA: the rung where they ended)")
    console.print(_ends_table(result, unit))
    console.print(f"Total length trained: [bold]{amount(result.total_length, unit)}[/]; "
                  f"makespan: [bold]{result.makespan}[/] time units "
                  f"(a time unit is what one slot takes to train one of the {unit})")
    if not result.finished:
        console.print(f"[bold]Not finished[/]: {UNFINISHED}; a real experiment ends ERRORED "
                      f"here. This is a bug in cade's searcher: please report it with this "
                      f"spec and seed.")


def _ends_table(result: SimulationResult, unit: str) -> Table:
    """Trials per final length (for ASHA: per rung where they stopped), by state."""
    table = Table()
    table.add_column(f"length ({unit})", justify="right")
    for state in ("completed", "stopped", "errored", "total"):
        table.add_column(state, justify="right")
    counts: Counter[tuple[int, str]] = Counter((t.length, t.state) for t in result.trials)
    for length in sorted({t.length for t in result.trials}):
        row = [counts[(length, state)] for state in ("completed", "stopped", "errored")]
        table.add_row(str(length), *(str(n) for n in row), str(sum(row)))
    return table


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
