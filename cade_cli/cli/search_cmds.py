"""`cade preview` and `cade simulate`: look at a search before spending any GPU time."""

from __future__ import annotations

import json

import click

from cade_cli.search.plan import plan_to_json, preview
from cade_cli.search.simulate import load_objective, result_to_json, simulate
from cade_cli.spec import determined
from cade_cli.spec.experiment import load_spec
from cade_cli.views.search_text import ProgressBar, print_plan, print_simulation

config_option = click.option(
    "--config", "overrides", multiple=True, metavar="KEY=VAL",
    help="Override a spec value, e.g. --config searcher.max_trials=32 (repeatable).")


# -- preview ------------------------------------------------------------------------------

@click.command("preview")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@config_option
def preview_command(spec_path: str, as_json: bool, overrides: tuple[str, ...]) -> None:
    """Show what SPEC's search will train: brackets, rung lengths, where trials end."""
    spec = load_spec(spec_path, overrides)
    for line in determined.notes(spec, variant=False):  # the plan itself names the variant
        click.echo(line, err=True)
    plan = preview(spec)
    if as_json:
        click.echo(json.dumps(plan_to_json(plan), indent=2))
        return
    from cade_cli.spec.settings import load_settings

    print_plan(spec, plan, load_settings())   # the site's pack / job_arrays defaults count


# -- simulate -----------------------------------------------------------------------------

@click.command("simulate")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--objective", required=True, metavar="MODULE:FUNC",
              help="FUNC(params, length, trial) -> metric; MODULE is imported from the "
                   "current directory. Try cade_cli.search.objectives:power_law.")
@click.option("--workers", type=click.IntRange(min=0), default=None, metavar="W",
              help="Simulated slots (default: max_concurrent_trials; 0 = unlimited).")
@click.option("--validation-period", type=click.IntRange(min=1), default=None, metavar="P",
              help="Report at every multiple of P (default: the lengths the searcher needs).")
@click.option("--seed", type=int, default=None, metavar="S",
              help="Searcher seed (default: reproducibility.experiment_seed, else 0).")
@click.option("--memory", type=click.FloatRange(min=0.0, min_open=True), default=None,
              metavar="L", help="Path-dependent objective: FUNC gets the params of the "
              "simulated model, which remembers the params it (and the parent whose "
              "checkpoint it resumed from) trained with, each L units of training shrinking "
              "their weight by a factor e. Default: the trial's params alone.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@config_option
def simulate_command(spec_path: str, objective: str, workers: int | None,
                     validation_period: int | None, seed: int | None, memory: float | None,
                     as_json: bool, overrides: tuple[str, ...]) -> None:
    """Run SPEC's search against an objective function on a simulated clock.

    No cluster, no training: each trial trains one unit of length per unit of time and
    reports FUNC(params, length, trial). An exception in FUNC is the trial failing.
    """
    spec = load_spec(spec_path, overrides)
    function = load_objective(objective)
    if seed is None:
        seed = spec.experiment_seed or 0
    with ProgressBar() as bar:
        result = simulate(spec, function, workers=workers,
                          validation_period=validation_period, seed=seed, on_progress=bar,
                          memory=memory)
    if as_json:
        click.echo(json.dumps(result_to_json(result), indent=2))
        return
    print_simulation(spec, result, seed)


def register(cli: click.Group) -> None:
    cli.add_command(preview_command)
    cli.add_command(simulate_command)
