"""What flows in and out of a searcher. Pure values, JSON-friendly.

A searcher is driven by three calls and answers each with a list of decisions:

    searcher.start()                               -> initial decisions
    searcher.on_validation(trial, length, metric)  -> decisions
    searcher.on_exit(trial, reason)                -> decisions

Trial ids are assigned by the searcher: 1, 2, 3, ... in creation order. `metric` is the raw
value the trial reported; the searcher applies smaller_is_better itself. `length` is the
trained length (in the spec's unit) at which the trial validated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ExitReason(str, Enum):
    ERRORED = "errored"          # failed after its restarts, or a malformed report
    CANCELED = "canceled"        # a user canceled/killed the trial
    INVALID_HP = "invalid_hp"    # the trial rejected its hyperparameters (never counts)
    COMPLETED = "completed"      # a trial that decides its own length exited 0 (OPEN_LENGTH)


@dataclass(frozen=True)
class Create:
    """Create trial `trial` with `params`.

    `parent` is set for PBT children: the child starts from the parent's latest checkpoint
    (and at the parent's trained length).
    """

    trial: int
    params: dict[str, Any]
    bracket: int = 0
    parent: int | None = None


@dataclass(frozen=True)
class Train:
    """Train `trial` until its total trained length is `length`, then end the segment.

    `report_at` lists the lengths (ascending, ending with `length`) at which the searcher
    needs a validation report; the trial may report more often.
    """

    trial: int
    length: int
    report_at: tuple[int, ...] = field(default=())


@dataclass(frozen=True)
class Stop:
    """Close `trial`: it trains no further. If it is running, the stop must reach it."""

    trial: int


@dataclass(frozen=True)
class Shutdown:
    """The search is over: no further decisions will come."""


# A search with nothing running and nothing to create that never sent Shutdown: a searcher
# bug. The engine ends such an experiment ERRORED with this message; `cade simulate` says it.
UNFINISHED = "the searcher has nothing left to run but did not finish the search"


Decision = Create | Train | Stop | Shutdown


SNAPSHOT_VERSION = 1   # of every searcher's snapshot(); restore() refuses others


def snapshot_header(name: str) -> dict[str, Any]:
    """The keys every searcher snapshot starts with."""
    return {"searcher": name, "version": SNAPSHOT_VERSION}


def check_snapshot(snapshot: dict[str, Any], name: str) -> None:
    """Refuse a snapshot of another searcher or version.

    Snapshots of single, grid, random and PBT written before the key was shared call the
    version "format"; they are read the same.
    """
    version = snapshot.get("version", snapshot.get("format"))
    if snapshot.get("searcher") != name or version != SNAPSHOT_VERSION:
        raise ValueError(f"not a version-{SNAPSHOT_VERSION} {name} searcher snapshot: "
                         f"{snapshot.get('searcher')!r} version {version!r}")


def decision_to_json(d: Decision) -> dict[str, Any]:
    if isinstance(d, Create):
        return {"op": "create", "trial": d.trial, "params": d.params, "bracket": d.bracket,
                "parent": d.parent}
    if isinstance(d, Train):
        return {"op": "train", "trial": d.trial, "length": d.length,
                "report_at": list(d.report_at)}
    if isinstance(d, Stop):
        return {"op": "stop", "trial": d.trial}
    return {"op": "shutdown"}


def decision_from_json(obj: dict[str, Any]) -> Decision:
    op = obj["op"]
    if op == "create":
        return Create(obj["trial"], obj["params"], obj.get("bracket", 0), obj.get("parent"))
    if op == "train":
        return Train(obj["trial"], obj["length"], tuple(obj.get("report_at", ())))
    if op == "stop":
        return Stop(obj["trial"])
    if op == "shutdown":
        return Shutdown()
    raise ValueError(f"unknown decision op {op!r}")


@dataclass(frozen=True)
class SearcherFacts:
    """What the rest of cade needs to know about a searcher, asked of the searcher itself.

    The engine, the preview, the simulator and the views read these instead of switching on
    the searcher's name, so a new searcher brings its facts with it.
    """

    ladders: tuple[tuple[int, ...], ...]   # rung lengths of each bracket, ascending
    final_length: int | None               # what a trial never stopped early trains to
    continues_in_place: bool               # a promoted trial trains on in the same segment
    decides_by_round: bool = False         # decisions wait for the whole population (PBT)
    walks_grid: bool = False               # trials are the grid's points, in order
    max_trials: int | None = None          # the trial budget, when the spec fixes it

    def rung_of(self, bracket: int, length: int) -> int | None:
        return rung_reached(self.ladders, bracket, length)


def rung_reached(ladders: Sequence[Sequence[int]], bracket: int, length: int) -> int | None:
    """The highest rung of `bracket`'s ladder at or below `length`; None below the first.

    A bracket index beyond the ladders (a spec that changed) reads the last ladder.
    """
    lengths = ladders[min(bracket, len(ladders) - 1)] if ladders else ()
    reached = [i for i, rung in enumerate(lengths) if length >= rung]
    return reached[-1] if reached else None
