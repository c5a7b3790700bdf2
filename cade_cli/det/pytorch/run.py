"""`python -m cade_cli.det.pytorch.run [--config EXPERIMENT.yaml] model_def:MyTrial`

What a spec's `entrypoint: model_def:MyTrial` runs: loads the class from the working
directory, builds its context from the experiment config and cade's job variables, and
trains it with det.pytorch.Trainer. Class-loading problems exit with the spec error code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cade_cli.errors import CadeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cade_cli.det.pytorch.run",
                                     description="Run a Determined PyTorchTrial class under cade.")
    parser.add_argument("--config", help="the experiment YAML (records_per_epoch, data, periods, ...)")
    parser.add_argument("entrypoint", help="MODULE:CLASS, e.g. model_def:MyTrial")
    arguments = parser.parse_args(argv)
    try:
        # Imported here so that the shim is on sys.path before the model definition loads.
        from cade_cli.det.pytorch import _config, _loading

        _loading.use_shim()
        import determined.pytorch as det_pytorch  # the shim: the model definition shares these classes

        trial_class = _loading.load_trial_class(arguments.entrypoint, Path.cwd())
        config = _config.read_experiment_config(arguments.config) if arguments.config else {}
        with det_pytorch.init(exp_conf=config) as context:
            trial = trial_class(context)
            det_pytorch.Trainer(trial, context).fit()
    except CadeError as err:
        print(f"cade: error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
