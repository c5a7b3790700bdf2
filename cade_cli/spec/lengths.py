"""Trial lengths as jobs are told them and views print them; standard library only, so that
the read commands need not load the spec reader."""

from __future__ import annotations

# The target length of a trial whose own code decides how long it trains: single, random and
# grid without searcher.max_length (Determined 0.38). Larger than any length a trial reports,
# so no report is past it; the job gets no CADE_TARGET_LENGTH (`handed_target`).
OPEN_LENGTH = 2 ** 62


def handed_target(target_length: int) -> int | None:
    """The target a job is told (CADE_TARGET_LENGTH, control.json); None: the trial decides."""
    return None if target_length >= OPEN_LENGTH else target_length


def length_text(length: int) -> str:
    """A length or target as the views print it."""
    return "decided by the trial" if length >= OPEN_LENGTH else str(length)


def amount(length: int, unit: str) -> str:
    """`1 batch`, `3 batches`: a length with its unit (batches, records or epochs)."""
    singular = {"batches": "batch", "records": "record", "epochs": "epoch"}.get(unit, unit)
    return f"{length} {singular if length == 1 else unit}"
