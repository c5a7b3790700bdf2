"""The reads whose cost follows what is shown, not the size of the experiment: trials
counted by shape, a page of trials in a display order (SQL ordering and LIMIT), and whether
an experiment has anything for a sync to do.

A mixin of `Ledger` (ledger.py), which provides the row helpers.
"""

from __future__ import annotations

from typing import Any

from cade_cli.store.records import (
    INVALID_HP_MESSAGE,
    TERMINAL_EXPERIMENT_STATES,
    Best,
    ExperimentRecord,
    TrialRecord,
    TrialShape,
    TrialState,
)

# ORDER BY clauses of `ranked_trials`, the display orders of `views.model.sort_trials` (a test
# holds them equal), forwards and reversed. {sign} is 1.0 when smaller is better, else -1.0.
_BY_METRIC = "best_metric IS NULL, {sign} * best_metric, id"
TRIAL_ORDERS = {
    "metric": (_BY_METRIC,
               # Reversed: the best last, trials without a metric still at the bottom by id.
               ("best_metric IS NULL, {sign} * best_metric DESC, "
                "CASE WHEN best_metric IS NULL THEN id ELSE -id END")),
    "id": ("id", "id DESC"),
    "state": ("state, id", "state DESC, id DESC"),
    "length": ("length DESC, id", "length, id DESC"),
}
# `cade status`: running trials, then queued and preempted ones, then the rest, each by metric.
_LIVE_FIRST = ("CASE state WHEN 'running' THEN 0 WHEN 'queued' THEN 1 WHEN 'preempted' THEN 1 "
               "ELSE 2 END, " + _BY_METRIC)
TRIAL_ORDERS["live"] = (_LIVE_FIRST, _LIVE_FIRST)


# Errored trials that failed: an errored trial's message starts with INVALID_HP_MESSAGE when
# it rejected its hyperparameters instead.
_FAILED = "experiment = ? AND state = ? AND substr(message, 1, ?) != ?"


def _failed_params(experiment_id: int) -> list[Any]:
    return [experiment_id, TrialState.ERRORED, len(INVALID_HP_MESSAGE), INVALID_HP_MESSAGE]


class TrialPages:
    """Counts and pages of the `trials` table; the live check of a sync."""

    # Provided by Ledger.
    def _rows(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    @staticmethod
    def _trial(row: dict[str, Any]) -> TrialRecord:
        raise NotImplementedError

    def experiments(self) -> list[ExperimentRecord]:
        raise NotImplementedError

    def live_segments(self, experiment_id: int) -> list[Any]:
        raise NotImplementedError

    def experiment(self, experiment_id: int) -> ExperimentRecord:
        raise NotImplementedError

    def trial_counts(self, experiment_id: int) -> dict[str, int]:
        """How many trials are in each state."""
        return {r["state"]: r["n"] for r in self._rows(
            "SELECT state, COUNT(*) AS n FROM trials WHERE experiment = ? GROUP BY state",
            [experiment_id])}

    def failed_trial_count(self, experiment_id: int) -> int:
        """Errored trials that failed: not those that rejected their hyperparameters."""
        return int(self._rows(f"SELECT COUNT(*) AS n FROM trials WHERE {_FAILED}",
                              _failed_params(experiment_id))[0]["n"])

    def latest_failed_trial(self, experiment_id: int) -> TrialRecord | None:
        rows = self._rows(f"SELECT * FROM trials WHERE {_FAILED} ORDER BY updated DESC, id DESC "
                          "LIMIT 1", _failed_params(experiment_id))
        return self._trial(rows[0]) if rows else None

    def trial_shapes(self, experiment_id: int) -> list[tuple[TrialShape, int]]:
        """Each distinct (bracket, length, target, state, closed) of the trials and how many
        trials have it: a few dozen groups for thousands of trials of a rung search."""
        rows = self._rows(
            "SELECT bracket, length, target_length, state, closed, COUNT(*) AS n FROM trials "
            "WHERE experiment = ? GROUP BY bracket, length, target_length, state, closed "
            "ORDER BY bracket, length, target_length, state, closed", [experiment_id])
        return [(TrialShape(r["bracket"], r["length"], r["target_length"], r["state"],
                            bool(r["closed"])), r["n"]) for r in rows]

    def ranked_trials(self, experiment_id: int, order: str, smaller_is_better: bool,
                      reverse: bool = False, limit: int | None = None) -> list[TrialRecord]:
        """The first `limit` trials (all when None) in an order of TRIAL_ORDERS."""
        if order not in TRIAL_ORDERS:
            raise ValueError(f"unknown order {order!r}; expected one of {', '.join(TRIAL_ORDERS)}")
        clause = TRIAL_ORDERS[order][1 if reverse else 0]
        sql = (f"SELECT * FROM trials WHERE experiment = ? ORDER BY "
               f"{clause.format(sign='1.0' if smaller_is_better else '-1.0')}")
        params: list[Any] = [experiment_id]
        if limit is not None:
            sql, params = sql + " LIMIT ?", params + [limit]
        return [self._trial(r) for r in self._rows(sql, params)]

    def needs_sync(self, experiment: ExperimentRecord) -> bool:
        """A sync has work: the experiment may still run, or a job of it is live."""
        return (experiment.state not in TERMINAL_EXPERIMENT_STATES
                or bool(self.live_segments(experiment.id)))

    def anything_to_sync(self, only: int | None = None) -> bool:
        """Any experiment (or only experiment `only`) needs a sync: a cheap query that lets a
        read command skip loading the engine when every experiment has ended."""
        return any(self.needs_sync(e) for e in self.experiments() if only in (None, e.id))

    def best(self, experiment_id: int) -> Best | None:
        """The trial with the best validation metric (ties: the earlier trial)."""
        exp = self.experiment(experiment_id)
        chosen = self.best_trial(exp.id, exp.smaller_is_better)
        if chosen is None or chosen.best_metric is None:
            return None
        return Best(chosen, chosen.best_metric, chosen.best_length or chosen.length,
                    chosen.best_checkpoint or chosen.latest_checkpoint)

    def listing(self) -> list[tuple[ExperimentRecord, int, TrialRecord | None]]:
        """Every experiment with how many trials it has and its best trial (`cade status`)."""
        counts = {r["experiment"]: r["n"] for r in self._rows(
            "SELECT experiment, COUNT(*) AS n FROM trials GROUP BY experiment")}
        return [(exp, counts.get(exp.id, 0), self.best_trial(exp.id, exp.smaller_is_better))
                for exp in self.experiments()]

    def best_trial(self, experiment_id: int, smaller_is_better: bool) -> TrialRecord | None:
        """The trial with the best recorded metric (ties: the earlier), as records.best_trial."""
        order = "ASC" if smaller_is_better else "DESC"
        rows = self._rows("SELECT * FROM trials WHERE experiment = ? AND best_metric IS NOT NULL"
                          f" ORDER BY best_metric {order}, id LIMIT 1", [experiment_id])
        return self._trial(rows[0]) if rows else None
