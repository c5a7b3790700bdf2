"""Where cade loads code by name: the searcher classes, the backends, the CLI's command
modules, objectives, and the module a Determined Trial entrypoint names.

Each is imported on demand, so that each searcher module stands alone, a command loads only
what it uses and a machine without Slurm never loads the Slurm backend; `load` is the one
call to `importlib.import_module` in cade (tests/test_import_rules.py checks it).
"""

from __future__ import annotations

import importlib
from typing import Any

# searcher name -> (module, class)
SEARCHERS: dict[str, tuple[str, str]] = {
    "single": ("cade_cli.search.searchers.simple", "Single"),
    "grid": ("cade_cli.search.searchers.simple", "Grid"),
    "random": ("cade_cli.search.searchers.simple", "Random"),
    "async_halving": ("cade_cli.search.searchers.asha", "AsyncHalving"),
    "adaptive_asha": ("cade_cli.search.searchers.adaptive", "AdaptiveAsha"),
    "pbt": ("cade_cli.search.searchers.pbt", "Pbt"),
}

# backend name -> (module, Scheduler class, function giving its #SBATCH/#PBS directives;
# None: the local backend has none)
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "local": ("cade_cli.backends.local", "LocalScheduler", None),
    "slurm": ("cade_cli.backends.slurm", "SlurmScheduler", "sbatch_directives"),
    "pbs": ("cade_cli.backends.pbs", "PbsScheduler", "pbs_directives"),
}

# Modules whose register(cli) adds their commands to `cade`, with the commands each adds: a
# command line imports only its command's module (`cade status` never loads the search or
# serve code), `cade --help` all of them. tests/test_cli_lazy.py checks the names.
CLI_MODULES: dict[str, tuple[str, ...]] = {
    "cade_cli.cli.search_cmds": ("preview", "simulate"),
    "cade_cli.cli.run_cmds": ("submit", "watch", "cancel", "pause", "resume"),
    "cade_cli.cli.read_cmds": ("status", "logs", "best"),
    "cade_cli.cli.admin_cmds": ("templates",),
    "cade_cli.cli.view_cmds": ("top", "plot", "report", "export"),
    "cade_cli.cli.serve_cmds": ("notebook", "tensorboard"),
}


def load(module: str, attribute: str | None = None) -> Any:
    """The module called `module`, or its `attribute`; import errors pass through as they are."""
    loaded = importlib.import_module(module)
    return loaded if attribute is None else getattr(loaded, attribute)
