"""Text and JSON shapes of the run commands' output (status, best, logs); pure functions but
`logs_json`, which reads the segment's logs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cade_cli.search.space import flatten
from cade_cli.spec.lengths import handed_target
from cade_cli.store.records import Best, ExperimentRecord, SegmentRecord, TrialRecord
from cade_cli.views.terminal import printable, short_number


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _params(params: dict[str, Any], short: bool = False) -> str:
    """`k=v` pairs; `short` (text for people; JSON is exact) names nested ones `a.b` and
    rounds floats as tables do, at every depth."""
    def shown(value: Any) -> str:
        if short and isinstance(value, float):
            return short_number(value)
        return json.dumps(value, sort_keys=True)
    pairs = flatten(params) if short else params
    return " ".join(f"{k}={shown(v)}" for k, v in sorted(pairs.items()))


def columns(rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces (stable for scripts and tests)."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)


def experiment_json(exp: ExperimentRecord) -> dict[str, Any]:
    return {"id": exp.id, "name": exp.name, "state": exp.state, "searcher": exp.searcher,
            "metric": exp.metric, "smaller_is_better": exp.smaller_is_better,
            "backend": exp.backend, "seed": exp.seed, "created": exp.created,
            "ended": exp.ended, "message": exp.message, "root": exp.root,
            "code_commit": exp.code_commit, "code_dirty": exp.code_dirty}


def trial_json(trial: TrialRecord) -> dict[str, Any]:
    return {"id": trial.id, "state": trial.state, "params": trial.params,
            "length": trial.length, "target_length": handed_target(trial.target_length),  # null: the trial decides
            "best_metric": trial.best_metric, "latest_metric": trial.latest_metric,
            "restarts": trial.restarts, "bracket": trial.bracket, "parent": trial.parent,
            "checkpoint": trial.latest_checkpoint, "message": trial.message}


def status_json(exp: ExperimentRecord, trials: list[TrialRecord],
                waiting: Mapping[int, str] | None = None) -> dict[str, Any]:
    """`waiting`: trial id -> what its next segment waits for before it can be submitted."""
    waits = waiting or {}
    return {"experiment": experiment_json(exp),
            "trials": [{**trial_json(t), "waiting": waits.get(t.id)} for t in trials]}


# One experiment of a listing: its record, how many trials it has, its best trial.
Listed = tuple[ExperimentRecord, int, TrialRecord | None]   # Ledger.listing


def experiments_json(rows: list[Listed]) -> dict[str, Any]:
    return {"experiments": [{**experiment_json(exp), "trials": count,
                             "best_metric": top.best_metric if top else None,
                             "best_trial": top.id if top else None}
                            for exp, count, top in rows]}


def experiments_text(rows: list[Listed]) -> str:
    if not rows:
        return "No experiments yet."
    table = [["ID", "NAME", "STATE", "SEARCHER", "BACKEND", "TRIALS", "BEST"]]
    for exp, count, top in rows:
        table.append([str(exp.id), exp.name, exp.state, exp.searcher, exp.backend,
                      str(count), _number(top.best_metric if top else None)])
    return columns(table)


def status_text(exp: ExperimentRecord, trials: list[TrialRecord],
                waiting: Mapping[int, str] | None = None,
                counts: Mapping[str, int] | None = None) -> str:
    """`counts` (trials per state) when `trials` are only the first of more (`status_page`)."""
    direction = "smaller is better" if exp.smaller_is_better else "larger is better"
    # Names, params and messages come from specs and trials: printable() keeps their control
    # characters off the terminal.
    lines = [printable(f"Experiment {exp.id} {exp.name}: {exp.state} ({exp.searcher}, {exp.backend}; "
                       f"{exp.metric}, {direction})")]
    if exp.message:
        lines.append(printable(f"  {exp.message}", keep_newlines=True))
    if not trials:
        return "\n".join(lines + ["No trials yet."])
    table = [["TRIAL", "STATE", "LENGTH", "BEST", "LATEST", "RESTARTS", "PARAMS"]]
    for t in trials:
        table.append([str(t.id), t.state, f"{t.length}/{handed_target(t.target_length) or '-'}",
                      _number(t.best_metric), _number(t.latest_metric), str(t.restarts),
                      _params(t.params, short=True)])
    total = sum(counts.values()) if counts else len(trials)
    if total > len(trials):
        states = ", ".join(f"{n} {state}" for state, n in sorted((counts or {}).items()))
        lines.append(printable(f"{total} trials ({states}); listed: {len(trials)}, running "
                               f"first, then queued, then by {exp.metric}"))
    lines.append(columns(table))
    notes = [printable(f"  trial {t.id}: {t.message}", keep_newlines=True) for t in trials if t.message]
    listed = {t.id for t in trials}
    waits = waiting or {}
    notes += [printable(f"  trial {trial}: {reason}") for trial, reason in waits.items()
              if trial in listed]
    unlisted = len(set(waits) - listed)
    if unlisted:
        notes.append(f"  {unlisted} more waiting to be submitted (not listed)")
    if total > len(trials):
        notes.append(f"… {total - len(trials)} more trials not shown: `cade status {exp.id} "
                     "--all` lists every trial, `--rows N` the first N")
    return "\n".join(lines + notes)


def logs_json(seg: SegmentRecord) -> dict[str, Any]:
    """`cade logs --json`: the segment and what it wrote (undecodable bytes replaced)."""
    def text(name: str) -> str:
        try:
            return (Path(seg.run_dir) / name).read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
    return {"experiment": seg.experiment, "trial": seg.trial, "segment": seg.index,
            "state": seg.state, "run_dir": seg.run_dir, "stdout": text("stdout.log"),
            "stderr": text("stderr.log")}


def best_json(exp: ExperimentRecord, found: Best) -> dict[str, Any]:
    return {"experiment": exp.id, "trial": found.trial.id, "params": found.trial.params,
            "metric": found.metric, "length": found.length, "checkpoint": found.checkpoint}


def best_text(exp: ExperimentRecord, found: Best) -> str:
    return "\n".join(printable(line) for line in [
        f"Best trial of experiment {exp.id} {exp.name}: trial {found.trial.id}",
        f"  {exp.metric}: {_number(found.metric)} at length {found.length}",
        f"  params: {_params(found.trial.params, short=True)}",
        f"  checkpoint: {found.checkpoint or '-'}",
    ])
