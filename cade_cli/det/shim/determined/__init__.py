"""`determined` inside a cade job: cade's Determined Core API (cade_cli.det).

cade's job script puts this directory's parent first on PYTHONPATH, so an unchanged
`import determined as det` script runs with only cade installed. A real `determined` package
installed too is shadowed inside cade jobs; CADE_DETERMINED=real in the environment cade is
started from lets it win instead. See docs/determined-core.md.
"""

from typing import Any

from cade_cli.det import (
    LOG_FORMAT,
    ClusterInfo,
    InvalidHP,
    TrialInfo,
    UnsupportedCall,
    core,
    get_cluster_info,
)
from cade_cli.det._unsupported import unsupported

__all__ = ["LOG_FORMAT", "ClusterInfo", "InvalidHP", "TrialInfo", "UnsupportedCall", "core",
           "get_cluster_info"]

_ELSEWHERE = {
    "keras": "port the TFKerasTrial to a Core API script (core.init) or cade_cli.report",
    "estimator": "port the EstimatorTrial to a Core API script (core.init) or cade_cli.report",
    "experimental": "use the Core API (determined.core) or the `cade` command line",
}


class _UnsupportedName(UnsupportedCall, AttributeError):
    """Also an AttributeError, so `from determined import X` still finds submodules."""


def __getattr__(name: str) -> Any:
    if name == "pytorch":  # `det.pytorch` after a bare `import determined as det`, as Determined allows
        import sys

        import determined.pytorch  # noqa: F401  (the submodule, found on this package's path)

        return sys.modules["determined.pytorch"]
    if name in _ELSEWHERE:
        try:
            unsupported(f"determined.{name}", _ELSEWHERE[name])
        except UnsupportedCall as error:
            raise _UnsupportedName(error.message, hint=error.hint) from None
    raise AttributeError(f"module 'determined' (cade's Core API) has no attribute {name!r}")
