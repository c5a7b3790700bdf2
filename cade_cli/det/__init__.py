"""Determined's Core API on cade: `import determined as det` in an unchanged script.

The job script puts cade_cli/det/shim first on PYTHONPATH, so `determined` resolves to a
thin package re-exporting this one. docs/determined-core.md: what maps, what does not.
"""

from __future__ import annotations

from cade_cli.det import core
from cade_cli.det._info import ClusterInfo, TrialInfo, get_cluster_info
from cade_cli.det._train import InvalidHP
from cade_cli.det._unsupported import UnsupportedCall

# Determined's log line format (its trial logs prefix every line like this).
LOG_FORMAT = "%(levelname)s: [%(process)s] %(name)s: %(message)s"

__all__ = ["LOG_FORMAT", "ClusterInfo", "InvalidHP", "TrialInfo", "UnsupportedCall", "core",
           "get_cluster_info"]
