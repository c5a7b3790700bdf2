"""cade's Python API for notebooks and scripts: the experiment side, as `cade` offers it.

    from cade_cli import api

    exp = api.submit("spec.yaml", overrides={"searcher.max_trials": 4})
    exp.wait()                      # drive (or wait for the driver) until it ends
    exp.best().trial.params
    api.experiment("digits").metrics(kind="validation")

The same code paths as the command line: the engine's face (`cade_cli.engine`) for submit,
sync, pause, resume, cancel and best, the ledger's records for reads; the same errors
(`cade_cli.errors`: SpecError for a bad spec, NotFoundError for an unknown id, ...). The
trial side (what a training script calls) is `cade_cli.report`. docs/api.md has the rest.
"""

from cade_cli.api.experiment import Driver, Experiment, experiment, experiments, submit
from cade_cli.engine import Best
from cade_cli.errors import CadeError, LedgerError, NotFoundError, SpecError
from cade_cli.store.records import ExperimentRecord, TrialRecord

__all__ = [
    "Best",
    "CadeError",
    "Driver",
    "Experiment",
    "ExperimentRecord",
    "LedgerError",
    "NotFoundError",
    "SpecError",
    "TrialRecord",
    "experiment",
    "experiments",
    "submit",
]
