"""Command-line parameter types: ids are checked here, before any use.

An id is a run of ASCII digits from 1 to 2^63 - 1 (what SQLite stores); anything else that
looks numeric (`²`, `٣`, a 30-digit number) is refused as a usage error (exit 2) instead of
reaching the ledger, where it would overflow or fail to convert.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from cade_cli.store import peek

MAX_ID = 2**63 - 1


def _looks_numeric(text: str) -> bool:
    return text.isdigit() or text.isdecimal() or text.isnumeric()


def parse_id(text: str, what: str) -> int | None:
    """The id `text` names, None when it is not numeric (then it is a name); refuses a
    numeric text that is no valid id."""
    if not _looks_numeric(text):
        return None
    if not (text.isascii() and text.isdecimal()):
        raise ValueError(f"{text!r} is not {what}: ids are written with the digits 0-9")
    number = int(text)
    if not 1 <= number <= MAX_ID:
        shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text)} digits)"
        raise ValueError(f"{shown} is not {what}: ids run from 1 to {MAX_ID}")
    return number


def _ledger_of(ctx: click.Context) -> Path:
    """The ledger a command line being completed names (--ledger), else the default one."""
    from cade_cli.store.ledger import default_ledger_path

    given = ctx.params.get("ledger_path")
    return Path(given) if given else default_ledger_path()


class ExperimentRef(click.ParamType):  # type: ignore[type-arg]  # generic only in click 8.2+
    """An experiment id (-> int) or name (-> str)."""

    name = "experiment"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        return "EXP"  # as docs/cli.md and the README write it

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
        """Ids (newest first, the name and state as help), then names, that start with
        what was typed; nothing when the ledger cannot be read."""
        found = peek.experiment_choices(_ledger_of(ctx))
        ids = [CompletionItem(str(i), help=f"{name} ({state})") for i, name, state in found
               if str(i).startswith(incomplete)]
        names = dict.fromkeys(name for _, name, _ in found if name.startswith(incomplete)
                              and not name.isdecimal())
        return ids + [CompletionItem(name) for name in names]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        try:
            number = parse_id(text, "an experiment id")
        except ValueError as err:
            self.fail(str(err), param, ctx)
        return text if number is None else number


class TrialRef(click.ParamType):  # type: ignore[type-arg]  # generic only in click 8.2+
    """N or EXP.N -> (EXP as an id, a name or None, N)."""

    name = "trial"

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
        """`EXP.N` for the experiment typed before the dot; else the trial ids of
        --experiment (or the latest experiment). Nothing when the ledger cannot be read."""
        exp_text, dot, _ = incomplete.rpartition(".")
        experiment: int | str | None = ctx.params.get("experiment")
        if dot:
            experiment = int(exp_text) if exp_text.isascii() and exp_text.isdecimal() else exp_text
        prefix = f"{exp_text}." if dot else ""
        return [CompletionItem(f"{prefix}{trial}", help=state)
                for _, trial, state in peek.trial_choices(_ledger_of(ctx), experiment)
                if f"{prefix}{trial}".startswith(incomplete)]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        exp_text, _, trial_text = text.rpartition(".")
        try:
            trial = parse_id(trial_text, "a trial id")
            experiment = parse_id(exp_text, "an experiment id") if exp_text else None
        except ValueError as err:
            self.fail(str(err), param, ctx)
        if trial is None:
            self.fail(f"{text!r} is not N or EXP.N", param, ctx)
        return (experiment if experiment is not None else (exp_text or None), trial)


EXPERIMENT = ExperimentRef()
TRIAL = TrialRef()
